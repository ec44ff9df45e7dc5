/**
 * THE wire protocol of the trainer (house style rule 2): one versioned, discriminated union of messages shared by
 * the control plane (coordinator ⇄ worker, ROUTER/DEALER) and the data plane (worker → worker ring, worker ⇄
 * coordinator star), encoded and decoded in one place.
 *
 * - `version.ts`: the protocol version and the limits of a frame;
 * - `messages.ts`: the message types;
 * - `validators.ts` (with `fields.ts`): header map → typed message, frame counts;
 * - `requests.ts`: the request → reply table of the control plane;
 * - `codec.ts`: `encode`/`decode`/`decodeAs`, and `peekHeader` for a peer of another version.
 */
export * from './version.js';
export * from './messages.js';
export { decode, decodeAs, encode, peekHeader, type HeaderPeek } from './codec.js';
export {
  REPLY_TYPE, errorReply, isReplyTo, isRequest, replyMessage, requestMessage,
  type ReplyOf, type ReplyPayload, type RequestKind, type RequestOf, type RequestPayload, type RequestTable,
} from './requests.js';
