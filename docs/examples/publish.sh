#!/bin/sh
# Publishes one message with curl. HERALD_API: the api_listen address,
# e.g. http://127.0.0.1:8081; HERALD_API_KEY: a key of api_keys.
curl -sS --fail-with-body -X POST "$HERALD_API/api/v1/publish" \
  -H "Authorization: apikey $HERALD_API_KEY" \
  -H "Content-Type: application/json" \
  -d '{"channel": "news", "data": {"headline": "Hello"}}'
