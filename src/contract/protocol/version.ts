/**
 * The version of the wire protocol and the limits every peer of that version enforces. A peer of another version is
 * answered with a readable `error` (see `peekHeader` in `codec.ts`), never parsed.
 */

/**
 * Version of this protocol; bumped on any incompatible change. Peers with another version are rejected.
 * v3: typed replies (`ack` carries nothing, `weights-checksum` carries the digest, every reply its rank), per-request
 * fields instead of `flag`/`generation` on every request, and the step statistics ({@link StepStats} in
 * messages.ts) named as their metrics.
 * v4: ring chunks travel in slices (`chunk.offset`), receipt tokens (`chunk.phase` `'done'`), and `hello`/`welcome`
 * may carry a member's `ipc://` address (`localDataAddress`) for peers on the same host.
 * v5: every worker `error` names what it answers (`command`, and `requestId` for a request), and `setup` → `ready` is a
 * request of the table (`requestId` on both), so no reply or error is paired with its request by guesswork (a late
 * error of a `sync-bn` that had timed out failed its redo); `hello.hostId` / `welcome.ring[i].hostId` (optional: a
 * member without one is never taken for a same-host peer).
 * Optional fields added within a version (a peer that predates one omits it, and its absence keeps the old
 * behaviour, so no bump): v4 `hello.capabilities.build`; v4 `hello.sharedMemory` / `welcome.ring[i].sharedMemory`
 * (absent: the member cannot use the shared-memory all-reduce, so a ring with it uses sockets).
 */
export const PROTOCOL_VERSION = 5;
/** Largest accepted header, in bytes (64 KiB): headers are small maps, tensors travel as frames. */
export const MAX_HEADER_BYTES = 64 * 1024;
/** Largest accepted binary frame, in bytes (512 MiB): one whole 128 MB star buffer fits with room to spare. */
export const MAX_FRAME_BYTES = 512 * 1024 * 1024;
/** Largest number of binary frames after the header. */
export const MAX_FRAMES = 8;
/** Longest accepted string field (addresses, host names, reasons, error messages), in UTF-16 code units. */
export const MAX_STRING_LENGTH = 4096;
/** Largest ring/world size accepted in a `welcome` message. */
export const MAX_WORLD_SIZE = 4096;

/** Element type of a tensor frame on the wire (always little-endian). */
export type WireDtype = 'float32' | 'float16';
/** Bytes per element of each {@link WireDtype}. */
export const WIRE_DTYPE_BYTES: Readonly<Record<WireDtype, number>> = Object.freeze({ float32: 4, float16: 2 });
