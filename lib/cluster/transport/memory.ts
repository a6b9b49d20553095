import { ClosedError, TimeoutError } from '../../errors.js';
import { NoRespondersError, type MessageHandler, type RequestHandler, type Transport } from './transport.js';

interface Served {
  readonly bytes: RequestHandler;
  readonly messages?: MessageHandler;
}

/** The in-process "wire" shared by the `MemoryTransport`s of one embedded network and namespace. */
export class MemoryTransportHub {
  readonly handlers = new Map<string, Served>();
}

export interface MemoryTransportOptions {
  /** Receives what a handler threw or rejected with. Default: `process.emitWarning`. */
  readonly onError?: (error: Error) => void;
  /**
   * Offer `requestMessage`: requests handed over as objects to nodes that serve them, no
   * encoding at all (embedded nodes do; see ARCHITECTURE.md, "Routed commands in
   * process"). Default false: bytes only, as on a wire.
   */
  readonly messages?: boolean;
}

/**
 * `Transport` inside one process. Payloads are handed over, not copied: they are
 * read-only once sent (see `Transport`). Like `NatsTransport`, a handler that
 * fails is reported on the serving side and its request stays unanswered, so the
 * requester sees `TimeoutError`.
 */
export class MemoryTransport implements Transport {
  /** The handlers this transport registered on the hub, by node id. */
  private readonly served = new Map<string, Served>();
  private readonly onError: (error: Error) => void;
  private closed = false;
  readonly requestMessage?: (nodeId: string, message: object, timeoutMs: number) => Promise<object | undefined>;

  constructor(
    private readonly hub: MemoryTransportHub = new MemoryTransportHub(),
    options: MemoryTransportOptions = {},
  ) {
    this.onError = options.onError ?? ((error) => process.emitWarning(error.message));
    if (options.messages) this.requestMessage = (nodeId, message, timeoutMs) => this.handOver(nodeId, message, timeoutMs);
  }

  async serve(nodeId: string, handler: RequestHandler, messages?: MessageHandler): Promise<() => Promise<void>> {
    if (this.closed) throw new ClosedError('MemoryTransport');
    const serving: Served = { bytes: this.guard(nodeId, handler), messages: messages && this.guard(nodeId, messages) };
    this.hub.handlers.set(nodeId, serving);
    this.served.set(nodeId, serving);
    return async () => this.unserve(nodeId, serving);
  }

  request(nodeId: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new ClosedError('MemoryTransport'));
    const served = this.hub.handlers.get(nodeId);
    if (!served) return Promise.reject(new NoRespondersError(nodeId));
    return this.await(served.bytes(payload), nodeId, timeoutMs);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const [nodeId, served] of [...this.served]) this.unserve(nodeId, served);
  }

  private handOver(nodeId: string, message: object, timeoutMs: number): Promise<object | undefined> {
    if (this.closed) return Promise.reject(new ClosedError('MemoryTransport'));
    const served = this.hub.handlers.get(nodeId);
    if (!served) return Promise.reject(new NoRespondersError(nodeId));
    if (!served.messages) return Promise.resolve(undefined);
    return this.await(served.messages(message), nodeId, timeoutMs);
  }

  /** The handler's reply, or `TimeoutError` after `timeoutMs` (a failed handler never answers). */
  private await<T>(reply: Promise<T>, nodeId: string, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new TimeoutError(`request to node ${nodeId}`, timeoutMs)), timeoutMs);
      void reply.then((value) => {
        clearTimeout(timer);
        resolve(value);
      });
    });
  }

  /** Runs `handler` a turn later; what it throws is reported and its request stays unanswered. */
  private guard<P, R>(nodeId: string, handler: (payload: P) => Promise<R>): (payload: P) => Promise<R> {
    return (payload) =>
      Promise.resolve()
        .then(() => handler(payload))
        .catch((error: unknown) => {
          this.report(error, nodeId);
          return new Promise<never>(() => undefined);
        });
  }

  /** Removes the handler only if it is still this transport's: another may serve the node by now. */
  private unserve(nodeId: string, served: Served): void {
    if (this.hub.handlers.get(nodeId) === served) this.hub.handlers.delete(nodeId);
    if (this.served.get(nodeId) === served) this.served.delete(nodeId);
  }

  private report(error: unknown, nodeId: string): void {
    const cause = error instanceof Error ? error : new Error(String(error));
    try {
      this.onError(new Error(`natstate: the handler of node ${nodeId} failed, the request stays unanswered: ${cause.message}`, { cause }));
    } catch {
      // An error reporter that fails has nowhere left to report to.
    }
  }
}
