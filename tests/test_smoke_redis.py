from core.keys import Keys


async def test_redis_fixture_is_namespaced(redis, keys: Keys) -> None:
    await redis.set(keys.persona("x"), "1")
    assert await redis.get(keys.persona("x")) == "1"
    assert keys.persona("x").startswith(keys.namespace + ":")
