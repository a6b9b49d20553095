/**
 * The `Transport` port: request/reply between the nodes of one namespace. The router
 * sends encoded commands to the node that owns an actor and waits for the encoded
 * reply. Adapters: `MemoryTransport` (embedded) and `NatsTransport` (core NATS request).
 *
 * Payloads are read-only once sent: the sender of a request (or a handler, of its reply)
 * never modifies the buffer afterwards (it may send it again), and the receiver only
 * reads it. So an in-process adapter may hand the buffer itself over instead of a copy.
 */
import { NatstateError } from '../../errors.js';

/** Handles one request addressed to this node; resolves with the reply bytes. */
export type RequestHandler = (payload: Uint8Array) => Promise<Uint8Array>;

/** Nobody serves the addressed node (it is gone or not started yet). */
export class NoRespondersError extends NatstateError {
  constructor(readonly nodeId: string) {
    super('NO_RESPONDERS', `no node "${nodeId}" is serving requests`);
  }
}

export interface Transport {
  /** Serves requests addressed to `nodeId`; resolves once serving (the returned function stops it). */
  serve(nodeId: string, handler: RequestHandler): Promise<() => Promise<void>>;
  /**
   * Sends `payload` to `nodeId` and resolves with its reply. Rejects with
   * `NoRespondersError` when nobody serves that node and `TimeoutError` after `timeoutMs`.
   */
  request(nodeId: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  close(): Promise<void>;
}
