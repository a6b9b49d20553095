/**
 * `ReplyMux`: request/reply over one connection without `nc.request`. Replies come back
 * on a single wildcard inbox subscription (subscribed on first use) and are matched by
 * the last token of their reply subject; one coarse sweep timer, running only while
 * requests wait, expires them.
 *
 * `nc.request` (nats.js 3.x) arms a timer and races two promises per call, and after
 * every successful reply it also settles the request through its `cancel()`, which
 * builds a `RequestError("cancelled")` with a stack trace, `noAsyncTraces` or not (about
 * 6% of a busy node's CPU in a profile of B9 over NATS). Node-to-node requests
 * (`NatsTransport`) and the event store's publishes (`JetStreamEventStore`) go through
 * here instead: with one command in flight per actor, B3 served 40-50% more commands a
 * second once commits were published this way.
 */
import { createInbox, errors as natsErrors, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { ClosedError, TimeoutError, reportError } from '../errors.js';
import { outboxOf } from './outbox.js';

export interface ReplyMuxOptions {
  /** Names the owner in `ClosedError` (e.g. `NatsTransport`). */
  readonly owner: string;
  /** Receives an error of the reply subscription (it is subscribed again on the next request). */
  readonly onError: (error: Error) => void;
}

interface Pending {
  readonly resolve: (reply: Msg) => void;
  readonly reject: (error: unknown) => void;
  readonly deadline: number;
  readonly timeoutMs: number;
  /** What timed out, for `TimeoutError`. */
  readonly what: string;
}

/** Granularity of request timeouts. */
const SWEEP_MS = 10;

export class ReplyMux {
  private readonly pending = new Map<number, Pending>();
  private replies: { inbox: string; subscription: Subscription } | undefined;
  private nextRequest = 0;
  private sweeper: ReturnType<typeof setInterval> | undefined;
  private closed = false;
  /** `closeWhenIdle` was called: no new requests, close once the last one settles. */
  private closing = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: ReplyMuxOptions,
  ) {}

  /**
   * Publishes `payload` on `subject` with a reply subject of this mux and resolves with
   * the reply, whatever it holds (a 503 "no responders" status message included: the
   * caller knows what that means for it). Rejects with `TimeoutError` (naming `what`)
   * after `timeoutMs`, and with `ClosedError` once the mux or the connection is closed.
   */
  request(subject: string, payload: Uint8Array, timeoutMs: number, what: string, headers?: MsgHdrs): Promise<Msg> {
    if (this.closed || this.closing) return Promise.reject(new ClosedError(this.options.owner));
    let inbox: string;
    try {
      inbox = this.replyInbox();
    } catch (error) {
      return Promise.reject(isClosedConnection(error) ? new ClosedError('the NATS connection') : error);
    }
    const id = this.nextRequest++;
    return new Promise<Msg>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline: Date.now() + Math.max(1, timeoutMs), timeoutMs, what });
      this.sweep();
      // Sent with everything else published this turn (see `Outbox`).
      outboxOf(this.nc).publish(subject, payload, { reply: `${inbox}.${id}`, headers }, (error) => {
        if (this.pending.delete(id)) reject(isClosedConnection(error) ? new ClosedError('the NATS connection') : error);
      });
    });
  }

  /** Fails every request still waiting with `ClosedError` and drops the reply subscription. */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const request of this.pending.values()) request.reject(new ClosedError(this.options.owner));
    this.pending.clear();
    this.replies?.subscription.unsubscribe();
    this.replies = undefined;
  }

  /** Takes no new requests; those waiting still get their reply (or time out), then it closes. */
  closeWhenIdle(): void {
    this.closing = true;
    this.closeIfIdle();
  }

  private closeIfIdle(): void {
    if (this.closing && !this.closed && this.pending.size === 0) this.close();
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
          reportError(this.options.onError, error, 'receiving replies');
          if (this.replies?.subscription === subscription) this.replies = undefined;
          for (const request of this.pending.values()) request.reject(error);
          this.pending.clear();
          this.closeIfIdle();
          return;
        }
        const id = Number(msg.subject.slice(inbox.length + 1));
        const request = this.pending.get(id);
        if (!request) return; // answered after its deadline: the requester has moved on
        this.pending.delete(id);
        request.resolve(msg);
        this.closeIfIdle();
      },
    });
    // The connection closed (or drained): nothing waiting on it will get its reply.
    void subscription.closed.then(() => {
      if (this.replies?.subscription !== subscription) return;
      this.replies = undefined;
      for (const request of this.pending.values()) request.reject(new ClosedError('the NATS connection'));
      this.pending.clear();
      this.closeIfIdle();
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
        request.reject(new TimeoutError(request.what, request.timeoutMs));
      }
      if (this.pending.size === 0) {
        clearInterval(this.sweeper);
        this.sweeper = undefined;
        this.closeIfIdle();
      }
    }, SWEEP_MS);
    this.sweeper.unref();
  }
}

export function isClosedConnection(error: unknown): boolean {
  return error instanceof natsErrors.ClosedConnectionError || error instanceof natsErrors.DrainingConnectionError;
}
