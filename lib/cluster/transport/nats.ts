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
 * Requests do not use `nc.request` but a `ReplyMux` (one inbox subscription, one coarse
 * sweep timer): `nc.request` builds error objects with stack traces and a timer per
 * call, which cost more CPU than the routing itself.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/nats-core';
import { ClosedError, reportError } from '../../errors.js';
import { ReplyMux, isClosedConnection } from '../../nats/reply-mux.js';
import { outboxOf } from '../../nats/outbox.js';
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

export class NatsTransport implements Transport {
  private readonly subjects: Subjects;
  private readonly onError: (error: Error) => void;
  private readonly subscriptions = new Set<Subscription>();
  private closed = false;
  private readonly mux: ReplyMux;

  constructor(
    private readonly nc: NatsConnection,
    namespace: string,
    options: NatsTransportOptions = {},
  ) {
    this.subjects = new Subjects(namespace, options.prefix);
    this.onError = options.onError ?? ((error) => process.emitWarning(error.message));
    this.mux = new ReplyMux(nc, { owner: 'NatsTransport', onError: this.onError });
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

  async request(nodeId: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (this.closed) throw new ClosedError('NatsTransport');
    const reply = await this.mux.request(this.subjects.node(nodeId), payload, timeoutMs, `request to node ${nodeId}`);
    // The server answers a request nobody subscribes to with a 503 status message.
    if (reply.headers?.code === 503) throw new NoRespondersError(nodeId);
    return reply.data;
  }

  /** Stops serving (requests being handled still get their reply); the connection stays open. */
  async close(): Promise<void> {
    this.closed = true;
    this.mux.close();
    const subscriptions = [...this.subscriptions];
    this.subscriptions.clear();
    await Promise.all(subscriptions.map((subscription) => stopServing(this.nc, subscription)));
  }

  private answer(nodeId: string, handler: RequestHandler, msg: Msg): void {
    Promise.resolve()
      .then(() => handler(msg.data))
      .then(
        (reply) => {
          // Sent with everything else published this turn (see `Outbox`).
          if (msg.reply) outboxOf(this.nc).publish(msg.reply, reply, undefined, (error) => this.report(error, `replying as node ${nodeId}`));
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
  // Replies still queued in the outbox leave first.
  await outboxOf(nc).flush().catch(() => undefined);
}
