import { ClosedError, TimeoutError } from '../../errors.js';
import { NoRespondersError, type RequestHandler, type Transport } from './transport.js';

/** The in-process "wire" shared by the `MemoryTransport`s of one embedded network and namespace. */
export class MemoryTransportHub {
  readonly handlers = new Map<string, RequestHandler>();
}

/** `Transport` inside one process. Payloads are copied so no node shares memory with another. */
export class MemoryTransport implements Transport {
  private readonly served = new Set<string>();
  private closed = false;

  constructor(private readonly hub: MemoryTransportHub = new MemoryTransportHub()) {}

  async serve(nodeId: string, handler: RequestHandler): Promise<() => Promise<void>> {
    if (this.closed) throw new ClosedError('MemoryTransport');
    this.hub.handlers.set(nodeId, handler);
    this.served.add(nodeId);
    return async () => {
      if (this.hub.handlers.get(nodeId) === handler) this.hub.handlers.delete(nodeId);
      this.served.delete(nodeId);
    };
  }

  request(nodeId: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new ClosedError('MemoryTransport'));
    const handler = this.hub.handlers.get(nodeId);
    if (!handler) return Promise.reject(new NoRespondersError(nodeId));
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => reject(new TimeoutError(`request to node ${nodeId}`, timeoutMs)), timeoutMs);
      handler(payload.slice()).then(
        (reply) => {
          clearTimeout(timer);
          resolve(reply.slice());
        },
        (error) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const nodeId of this.served) this.hub.handlers.delete(nodeId);
    this.served.clear();
  }
}
