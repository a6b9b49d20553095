/**
 * `Transport` over core NATS request/reply. A node serves on its own subject
 * (`Subjects.node`) with a plain subscription, not a queue group: one node is one
 * responder, so a request reaches exactly the node it names, or nobody and then the
 * server's "no responders" status answers at once.
 *
 * A handler that throws or rejects is a bug of the serving node (the router encodes
 * every failure into its reply bytes), so it is reported there, to `onError`, and the
 * request is not answered: the requester sees `TimeoutError`, as it would if the node
 * had crashed, and retries like after any timeout.
 *
 * Requests do not use `nc.request`: the transport multiplexes its own replies on one
 * inbox subscription and expires them with one coarse sweep timer. `nc.request` builds
 * two error objects (with stack traces) and a timer per call, which cost more CPU than
 * the routing itself; this keeps a routed command close to a bare publish.
 */
import { createInbox, errors as natsErrors, type Msg, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { ClosedError, TimeoutError, reportError } from '../../errors.js';
import { Subjects } from '../../subjects.js';
import { NoRespondersError, type RequestHandler, type Transport } from './transport.js';

export interface NatsTransportOptions {
  /** Subject prefix (see `Subjects`); every node of a cluster must use the same one. */
  readonly prefix?: string;
  /**
   * Receives what serving swallowed so that the NATS client keeps running: a handler
   * that threw or rejected, and a reply that could not be sent. Default: `process.emitWarning`.
   */
  readonly onError?: (error: Error) => void;
}

interface PendingRequest {
  readonly nodeId: string;
  readonly resolve: (reply: Uint8Array) => void;
  readonly reject: (error: unknown) => void;
  readonly deadline: number;
  readonly timeoutMs: number;
}

/** Granularity of request timeouts. */
const SWEEP_MS = 10;

export class NatsTransport implements Transport {
  private readonly subjects: Subjects;
  private readonly onError: (error: Error) => void;
  private readonly subscriptions = new Set<Subscription>();
  private closed = false;
  /** Replies in flight, by the last token of their reply subject. */
  private readonly pending = new Map<number, PendingRequest>();
  private replies: { inbox: string; subscription: Subscription } | undefined;
  private nextRequest = 0;
  private sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly nc: NatsConnection,
    namespace: string,
    options: NatsTransportOptions = {},
  ) {
    this.subjects = new Subjects(namespace, options.prefix);
    this.onError = options.onError ?? ((error) => process.emitWarning(error.message));
  }

  /** Resolves after a round trip to the server, so the subscription is live for every node. */
  async serve(nodeId: string, handler: RequestHandler): Promise<() => Promise<void>> {
    this.assertOpen();
    let subscription: Subscription;
    try {
      subscription = this.nc.subscribe(this.subjects.node(nodeId), {
        // Runs inside the client's protocol parser: nothing may escape from here.
        callback: (error, msg) => {
          if (error) this.report(error, `serving node ${nodeId}`);
          else this.answer(nodeId, handler, msg);
        },
      });
    } catch (error) {
      throw isClosedConnection(error) ? new ClosedError('the NATS connection') : error;
    }
    this.subscriptions.add(subscription);
    try {
      await this.nc.flush();
    } catch (error) {
      // Only a connection closing under the flush fails it, and that ends the subscription too.
      this.subscriptions.delete(subscription);
      throw isClosedConnection(error) ? new ClosedError('the NATS connection') : error;
    }
    return async () => {
      if (!this.subscriptions.delete(subscription)) return;
      await stopServing(this.nc, subscription);
    };
  }

  request(nodeId: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new ClosedError('NatsTransport'));
    let inbox: string;
    try {
      inbox = this.replyInbox();
    } catch (error) {
      return Promise.reject(isClosedConnection(error) ? new ClosedError('the NATS connection') : error);
    }
    const id = this.nextRequest++;
    return new Promise<Uint8Array>((resolve, reject) => {
      this.pending.set(id, { nodeId, resolve, reject, deadline: Date.now() + Math.max(1, timeoutMs), timeoutMs });
      this.sweep();
      try {
        this.nc.publish(this.subjects.node(nodeId), payload, { reply: `${inbox}.${id}` });
      } catch (error) {
        this.pending.delete(id);
        reject(isClosedConnection(error) ? new ClosedError('the NATS connection') : error);
      }
    });
  }

  /** The inbox replies come back on, subscribed on first use. */
  private replyInbox(): string {
    if (this.replies) return this.replies.inbox;
    // Honour a custom inbox prefix the connection was opened with (subject permissions).
    const inbox = createInbox((this.nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix);
    const subscription = this.nc.subscribe(`${inbox}.*`, {
      callback: (error, msg) => {
        if (error) {
          // The client ends a subscription after an error (e.g. a permission violation):
          // fail what waits on it, and subscribe again on the next request.
          this.report(error, 'receiving replies');
          if (this.replies?.subscription === subscription) this.replies = undefined;
          for (const request of this.pending.values()) request.reject(error);
          this.pending.clear();
          return;
        }
        const id = Number(msg.subject.slice(inbox.length + 1));
        const request = this.pending.get(id);
        if (!request) return; // answered after its deadline: the requester has moved on
        this.pending.delete(id);
        // The server answers a request nobody subscribes to with a 503 status message.
        if (msg.headers?.code === 503) request.reject(new NoRespondersError(request.nodeId));
        else request.resolve(msg.data);
      },
    });
    this.replies = { inbox, subscription };
    return inbox;
  }

  /** Expires requests past their deadline; runs only while requests are pending. */
  private sweep(): void {
    if (this.sweeper || this.pending.size === 0) return;
    this.sweeper = setInterval(() => {
      const now = Date.now();
      for (const [id, request] of this.pending) {
        if (request.deadline > now) continue;
        this.pending.delete(id);
        request.reject(new TimeoutError(`request to node ${request.nodeId}`, request.timeoutMs));
      }
      if (this.pending.size === 0) {
        clearInterval(this.sweeper);
        this.sweeper = undefined;
      }
    }, SWEEP_MS);
    this.sweeper.unref();
  }

  /** Stops serving (requests being handled still get their reply); the connection stays open. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const request of this.pending.values()) request.reject(new ClosedError('NatsTransport'));
    this.pending.clear();
    this.replies?.subscription.unsubscribe();
    this.replies = undefined;
    const subscriptions = [...this.subscriptions];
    this.subscriptions.clear();
    await Promise.all(subscriptions.map((subscription) => stopServing(this.nc, subscription)));
  }

  private answer(nodeId: string, handler: RequestHandler, msg: Msg): void {
    Promise.resolve()
      .then(() => handler(msg.data))
      .then(
        (reply) => {
          try {
            msg.respond(reply);
          } catch (error) {
            this.report(error, `replying as node ${nodeId}`);
          }
        },
        (error: unknown) => this.report(error, `the handler of node ${nodeId} failed, the request stays unanswered`),
      );
  }

  private report(error: unknown, what: string): void {
    reportError(this.onError, error, what);
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('NatsTransport');
  }
}

/**
 * Drains the subscription (messages already received are still handled) and waits until
 * the server has dropped it, so a request sent afterwards finds no responders.
 */
async function stopServing(nc: NatsConnection, subscription: Subscription): Promise<void> {
  if (nc.isClosed()) return;
  // Both fail only when the connection closes under them, which ends the subscription too.
  await subscription.drain().catch(() => undefined);
  await nc.flush().catch(() => undefined);
}


function isClosedConnection(error: unknown): boolean {
  return error instanceof natsErrors.ClosedConnectionError || error instanceof natsErrors.DrainingConnectionError;
}

