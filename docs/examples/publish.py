"""Publishes from a Python backend with requests (Debian: python3-requests).
HERALD_API: the api_listen address, e.g. http://127.0.0.1:8081;
HERALD_API_KEY: a key of api_keys."""

import os

import requests

API = os.environ["HERALD_API"]
SESSION = requests.Session()          # one kept-alive connection for every call
SESSION.headers["Authorization"] = "apikey " + os.environ["HERALD_API_KEY"]


def publish(channel, data, idempotency_key=None):
    """Publishes data; returns {"offset", "epoch"}. Raises on an error answer
    (its body says why: {"error": {"code", "message"}})."""
    body = {"channel": channel, "data": data}
    if idempotency_key:
        body["idempotency_key"] = idempotency_key
    r = SESSION.post(API + "/api/v1/publish", json=body, timeout=10)
    if r.status_code != 200:
        raise RuntimeError("publish: %d %s" % (r.status_code, r.json()["error"]))
    return r.json()


def history(channel, limit=10):
    r = SESSION.get(API + "/api/v1/history",
                    params={"channel": channel, "limit": limit}, timeout=10)
    r.raise_for_status()
    return r.json()["publications"]


if __name__ == "__main__":
    print(publish("news", {"headline": "Hello from Python"}))
    print([p["data"] for p in history("news")])
