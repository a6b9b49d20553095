/**
 * The `Transport` port: request/reply between the nodes of one namespace. The router
 * sends encoded commands to the node that owns an actor and waits for the encoded
 * reply; in process, where an adapter offers `requestMessage`, it hands the request
 * object over instead. Adapters: `MemoryTransport` (embedded) and `NatsTransport`
 * (core NATS request).
 *
 * Payloads are read-only once sent: the sender of a request (or a handler, of its reply)
 * never modifies the buffer afterwards (it may send it again), and the receiver only
 * reads it. So an in-process adapter may hand the buffer itself over instead of a copy.
 */
import { NatstateError } from '../../errors.js';

/** Handles one request addressed to this node; resolves with the reply bytes. */
export type RequestHandler = (payload: Uint8Array) => Promise<Uint8Array>;

/**
 * Handles one request handed over as a message object (in process only, see
 * `Transport.requestMessage`); resolves with the reply object. It validates the message
 * as it would decoded bytes, and neither side modifies a message once it is sent.
 */
export type MessageHandler = (message: object) => Promise<object>;

/** Nobody serves the addressed node (it is gone or not started yet). */
export class NoRespondersError extends NatstateError {
  constructor(readonly nodeId: string) {
    super('NO_RESPONDERS', `no node "${nodeId}" is serving requests`);
  }
}

export interface Transport {
  /**
   * Serves requests addressed to `nodeId`; resolves once serving (the returned function
   * stops it). `messages` serves what in-process requesters hand over as objects
   * (`requestMessage`); adapters that cross a wire ignore it.
   */
  serve(nodeId: string, handler: RequestHandler, messages?: MessageHandler): Promise<() => Promise<void>>;
  /**
   * Sends `payload` to `nodeId` and resolves with its reply. Rejects with
   * `NoRespondersError` when nobody serves that node and `TimeoutError` after `timeoutMs`.
   */
  request(nodeId: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  /**
   * In-process adapters only (absent on the others): hands `message` to the message
   * handler of `nodeId` as it is, no encoding, and resolves with its reply object, or
   * with undefined when that node serves bytes only (send bytes then). Rejects like
   * `request`.
   */
  readonly requestMessage?: (nodeId: string, message: object, timeoutMs: number) => Promise<object | undefined>;
  close(): Promise<void>;
}
