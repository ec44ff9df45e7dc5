/**
 * The request → reply table of the control plane (house style rule 13; Ray Train's `WorkerGroup.execute`): every
 * coordinator → worker request that is answered gets exactly one reply per asked rank, of the type this table
 * names, echoing the request's `requestId`. The coordinator sends requests with one primitive
 * (`Cluster.request(kind, payload)`) that pairs the replies; a worker answers with {@link replyMessage}. Neither
 * side pairs a reply with its request by hand.
 *
 * The training step (`step` → `step-done` | `step-failed`, then `commit` | `abort`) is not in the table: it is a
 * two-phase exchange keyed by (step, generation), not a request with one reply.
 */
import type {
  AckMessage, ErrorMessage, ChecksumMessage, GetStateMessage, LoadStateMessage, Message, ReadyMessage, RequestMessage, SetupMessage, StageMessage,
  StateMessage, SyncBnMessage, ValidateMessage, ValidDoneMessage, WeightsChecksumMessage,
} from './messages.js';

/** Each request kind with its request and its reply message. */
export interface RequestTable {
  readonly setup: { readonly request: SetupMessage; readonly reply: ReadyMessage };
  readonly stage: { readonly request: StageMessage; readonly reply: AckMessage };
  readonly validate: { readonly request: ValidateMessage; readonly reply: ValidDoneMessage };
  readonly 'get-state': { readonly request: GetStateMessage; readonly reply: StateMessage };
  readonly 'load-state': { readonly request: LoadStateMessage; readonly reply: WeightsChecksumMessage };
  readonly checksum: { readonly request: ChecksumMessage; readonly reply: WeightsChecksumMessage };
  readonly 'sync-bn': { readonly request: SyncBnMessage; readonly reply: AckMessage };
}
/** A request kind (the `type` of its request message). */
export type RequestKind = keyof RequestTable;
/** The request message of `K`. */
export type RequestOf<K extends RequestKind> = RequestTable[K]['request'];
/** The reply message of `K`. */
export type ReplyOf<K extends RequestKind> = RequestTable[K]['reply'];
/** What a caller supplies for a request of kind `K`: its fields without `type` and `requestId`. */
export type RequestPayload<K extends RequestKind> = Omit<RequestOf<K>, 'type' | 'requestId'>;
/** What a worker supplies for the reply to `K`: its fields without `type`, `requestId` and `rank`. */
export type ReplyPayload<K extends RequestKind> = Omit<ReplyOf<K>, 'type' | 'requestId' | 'rank'>;

// Compile-time: the table covers exactly the request messages, and each entry's request has the entry's kind.
type Exactly<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const TABLE_COVERS_REQUESTS: Exactly<RequestKind, RequestMessage['type']> = true;
const KINDS_MATCH: Exactly<{ [K in RequestKind]: RequestOf<K>['type'] }, { [K in RequestKind]: K }> = true;
void TABLE_COVERS_REQUESTS;
void KINDS_MATCH;

/** The reply type of each request kind, as a runtime table. */
export const REPLY_TYPE: { readonly [K in RequestKind]: ReplyOf<K>['type'] } = Object.freeze({
  setup: 'ready',
  stage: 'ack',
  validate: 'valid-done',
  'get-state': 'state',
  'load-state': 'weights-checksum',
  checksum: 'weights-checksum',
  'sync-bn': 'ack',
});

/**
 * Builds the request message of kind `kind`.
 * @param requestId - the id its replies echo (integer ≥ 0)
 */
export function requestMessage<K extends RequestKind>(kind: K, requestId: number, payload: RequestPayload<K>): RequestOf<K> {
  return { ...payload, type: kind, requestId } as unknown as RequestOf<K>;
}

/**
 * Builds the reply to `request` from `rank`.
 * @param payload - the reply's own fields (e.g. `{ checksum }` for `checksum`)
 */
export function replyMessage<M extends RequestMessage>(request: M, rank: number, payload: ReplyPayload<M['type']>): ReplyOf<M['type']> {
  return { ...payload, type: REPLY_TYPE[request.type], requestId: request.requestId, rank } as unknown as ReplyOf<M['type']>;
}

/** True when `m` is a request of the request → reply table (it carries a `requestId` its reply echoes). */
export function isRequest(m: Message): m is RequestMessage {
  return Object.hasOwn(REPLY_TYPE, m.type);
}

/**
 * The `error` a worker sends when it could not carry out `failed`: it names the message it answers (its type, and its
 * request id when it is a request), so the coordinator pairs it as it pairs a reply.
 * @param rank - the reporter's rank (-1 before it has one)
 */
export function errorReply(failed: Message, rank: number, code: ErrorMessage['code'], message: string): ErrorMessage {
  return { type: 'error', code, message, rank, command: failed.type, requestId: isRequest(failed) ? failed.requestId : null };
}

/** True when `m` is the reply to the request `kind` with id `requestId`. */
export function isReplyTo<K extends RequestKind>(kind: K, requestId: number, m: Message): m is ReplyOf<K> {
  return m.type === REPLY_TYPE[kind] && (m as { requestId?: number }).requestId === requestId;
}
