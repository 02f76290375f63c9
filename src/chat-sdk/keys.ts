/**
 * How a Chat SDK key or thread id becomes a keyed-store key. The store takes keys of at most
 * 512 UTF-8 bytes of well-formed text without NUL; Slack and Teams thread ids can be longer
 * (a Teams conversation id alone runs past 300 characters) and a key is the caller's to
 * choose. A key the store can hold as it is is stored as `=` + the key; any other (too long,
 * empty, a NUL, a lone surrogate) as `#` + the SHA-256 of its UTF-16 code units, so two
 * different keys never share a row and the digest never meets a plain key.
 *
 * @internal
 */
import { createHash } from "node:crypto"
import { isWellFormedText, MAX_KEY_BYTES, utf8Bytes } from "../layers/store/storeRules.js"

/** The longest key stored as it is, in UTF-8 bytes (the store's limit less the one-byte prefix). */
const MAX_PLAIN_BYTES = MAX_KEY_BYTES - 1

/** The store key of a Chat SDK key or thread id: the same in every process, for every string. */
export const storedKey = (key: string): string =>
  key.length > 0 && isWellFormedText(key) && (key.length * 3 <= MAX_PLAIN_BYTES || utf8Bytes(key) <= MAX_PLAIN_BYTES)
    ? `=${key}`
    : `#${createHash("sha256").update(Buffer.from(key, "utf16le")).digest("hex")}`
