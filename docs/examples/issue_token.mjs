// Issues Herald tokens from a Node.js backend with jose (npm "jose"):
// a connection token for a user and a channel token for one private
// channel, signed ES256 with the backend's private key. Herald holds the
// public half (token_public_key, or a JWKS with the same kid).
// HERALD_SIGNING_KEY: path of the PEM private key (PKCS#8).
import { readFileSync } from "node:fs";
import { SignJWT, importPKCS8 } from "jose";

const key = await importPKCS8(readFileSync(process.env.HERALD_SIGNING_KEY, "utf8"), "ES256");
const now = Math.floor(Date.now() / 1000);

async function sign(claims, ttl) {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "ES256", kid: "2026-12" })
    .setIssuedAt(now)
    .setExpirationTime(now + ttl)
    .sign(key);
}

// The user, what they may open without channel tokens, what others see.
const connection = await sign(
  { sub: "42", channels: ["orders:acme"], info: { name: "Ada" } }, 3600);
// One private channel for the same user, short-lived: the client renews it
// with sub_refresh before it expires.
const channel = await sign({ sub: "42", channel: "orders:beta" }, 600);

console.log(JSON.stringify({ connection, channel }));
