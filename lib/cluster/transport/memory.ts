import { ClosedError, TimeoutError } from '../../errors.js';
import { NoRespondersError, type RequestHandler, type Transport } from './transport.js';

/** The in-process "wire" shared by the `MemoryTransport`s of one embedded network and namespace. */
export class MemoryTransportHub {
  readonly handlers = new Map<string, RequestHandler>();
}

export interface MemoryTransportOptions {
  /** Receives what a handler threw or rejected with. Default: `process.emitWarning`. */
  readonly onError?: (error: Error) => void;
}

/**
 * `Transport` inside one process. Payloads are handed over, not copied: they are
 * read-only once sent (see `Transport`). Like `NatsTransport`, a handler that
 * fails is reported on the serving side and its request stays unanswered, so the
 * requester sees `TimeoutError`.
 */
export class MemoryTransport implements Transport {
  /** The handlers this transport registered on the hub, by node id. */
  private readonly served = new Map<string, RequestHandler>();
  private readonly onError: (error: Error) => void;
  private closed = false;

  constructor(
    private readonly hub: MemoryTransportHub = new MemoryTransportHub(),
    options: MemoryTransportOptions = {},
  ) {
    this.onError = options.onError ?? ((error) => process.emitWarning(error.message));
  }

  async serve(nodeId: string, handler: RequestHandler): Promise<() => Promise<void>> {
    if (this.closed) throw new ClosedError('MemoryTransport');
    const serving: RequestHandler = (payload) =>
      Promise.resolve()
        .then(() => handler(payload))
        .catch((error: unknown) => {
          this.report(error, nodeId);
          return new Promise<never>(() => undefined);
        });
    this.hub.handlers.set(nodeId, serving);
    this.served.set(nodeId, serving);
    return async () => this.unserve(nodeId, serving);
  }

  request(nodeId: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new ClosedError('MemoryTransport'));
    const handler = this.hub.handlers.get(nodeId);
    if (!handler) return Promise.reject(new NoRespondersError(nodeId));
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => reject(new TimeoutError(`request to node ${nodeId}`, timeoutMs)), timeoutMs);
      void handler(payload).then((reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const [nodeId, handler] of [...this.served]) this.unserve(nodeId, handler);
  }

  /** Removes the handler only if it is still this transport's: another may serve the node by now. */
  private unserve(nodeId: string, handler: RequestHandler): void {
    if (this.hub.handlers.get(nodeId) === handler) this.hub.handlers.delete(nodeId);
    if (this.served.get(nodeId) === handler) this.served.delete(nodeId);
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
