/**
 * ZeroMQ CURVE keys as text: Z85 (ZeroMQ RFC 32), 40 characters for a 32-byte Curve25519 key (ZeroMQ RFC 26). A string
 * that is not one makes zeromq's socket option setter throw a bare `Error: Invalid argument` (EINVAL) from deep inside
 * the socket's construction, so keys from the command line or a key file are checked here first.
 */

/** The Z85 alphabet, in digit order (RFC 32). */
const Z85_ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';

/**
 * Why `key` is not a Z85-encoded 32-byte key, or null when it is: 40 characters of the Z85 alphabet whose 5-character
 * groups each encode a 32-bit value (below 2^32: "#####" is 85^5 − 1, which libzmq's `zmq_z85_decode` refuses).
 */
export function curveKeyProblem(key: string): string | null {
  if (key.length !== 40) return `it has ${key.length} characters, a Z85 key has 40`;
  for (let g = 0; g < 40; g += 5) {
    let value = 0;
    for (let i = g; i < g + 5; i++) {
      const digit = Z85_ALPHABET.indexOf(key[i]!);
      if (digit < 0) return `${JSON.stringify(key[i])} (character ${i + 1}) is not a Z85 character`;
      value = value * 85 + digit;
    }
    if (value > 0xffffffff) return `characters ${g + 1}-${g + 5} (${key.slice(g, g + 5)}) encode ${value}, more than 32 bits`;
  }
  return null;
}
