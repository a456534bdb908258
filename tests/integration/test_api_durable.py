"""Publications made through the server API into a durable namespace are
in the store: after a restart of herald a client recovers them with
since, and the API's history has them (docs/durable-history.md)."""

import asyncio

import herald_harness as hh
from herald_harness import t
from ferret_harness import ferretdb  # noqa: F401  (the fixture)
from test_idempotent_publish import api_env, api_port, apost, durable_cfg, stored
from test_api_listen import AUTH, call


async def test_api_publications_survive_a_restart(server_factory, ferretdb):  # noqa: F811
    cfg = durable_cfg(ferretdb)
    s = server_factory(cfg, env=api_env())
    ch = hh.chan("d:")
    port = api_port(s)
    answers = []
    for i in range(5):
        st, doc = await apost(port, {"channel": ch, "data": {"i": i}})
        assert st == 200, doc
        answers.append(doc)
    epoch = answers[0]["epoch"]
    assert [a["offset"] for a in answers] == [1, 2, 3, 4, 5]
    hh.wait_for(lambda: len(stored(ferretdb, ch)) == 5, t(10), what="5 stored")
    s.stop()

    s2 = server_factory(cfg, env=api_env())
    sub = await s2.client()
    ok = await sub.ok("subscribe", channel=ch, since={"offset": 2, "epoch": epoch})
    assert ok["recovered"] is True and ok["epoch"] == epoch, ok
    assert [(p["offset"], p["data"]) for p in ok["publications"]] == \
        [(3, {"i": 2}), (4, {"i": 3}), (5, {"i": 4})], ok
    r, doc = await asyncio.to_thread(call, api_port(s2), "GET",
                                     "/api/v1/history?channel=" + ch, AUTH)
    assert r.status == 200 and [p["offset"] for p in doc["publications"]] == [1, 2, 3, 4, 5]
    st, doc = await apost(api_port(s2), {"channel": ch, "data": "after"})
    assert st == 200 and (doc["offset"], doc["epoch"]) == (6, epoch), doc
