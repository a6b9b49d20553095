/**
 * `EventBus` over core NATS: each `EventStored` is published on its actor's subject
 * (`Subjects.eventStored`, which names its shard) and every subscription is a plain NATS
 * subscription on `Subjects.eventStoredFilter`, so filtering (by shard, type or id)
 * happens in the server. Delivery is at most
 * once, like core NATS itself; consumers that need every event read the event store.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/nats-core';
import { decode, DEFAULT_MAX_PAYLOAD, encodeWithin } from '../codec/codec.js';
import { isEventStored } from '../codec/messages.js';
import { ClosedError, DecodeError, reportError } from '../errors.js';
import { Subjects } from '../subjects.js';
import { outboxOf } from '../nats/outbox.js';
import type { EventBus, EventStored, EventStoredFilter, EventStoredHandler, Unsubscribe } from './eventbus.js';

export interface NATSEventBusOptions {
  /** Subject prefix (see `Subjects`); every node of a cluster must use the same one. */
  readonly prefix?: string;
  /**
   * Receives what the bus swallowed so that neither the committer nor the NATS client
   * breaks: a notification that could not be published (`PayloadTooLargeError`, a closed
   * connection), a received message that is not a valid `EventStored` for its subject
   * (`DecodeError`), and whatever a handler threw or rejected with. Without it those
   * errors are dropped.
   */
  readonly onError?: (error: Error) => void;
}

export class NATSEventBus implements EventBus {
  readonly namespace: string;
  private readonly subjects: Subjects;
  private readonly onError?: (error: Error) => void;
  private readonly subscriptions = new Set<Subscription>();
  private closed = false;

  constructor(
    private readonly nc: NatsConnection,
    namespace: string,
    options: NATSEventBusOptions = {},
  ) {
    this.subjects = new Subjects(namespace, options.prefix);
    this.namespace = namespace;
    this.onError = options.onError;
  }

  /**
   * Fire-and-forget: the commit is already durable when this runs, so a notification
   * that cannot be sent is reported to `onError` rather than thrown at the committer.
   * Only using a closed bus throws (`ClosedError`), as that is a bug of the caller.
   */
  publish(notification: EventStored): void {
    if (this.closed) throw new ClosedError('NATSEventBus');
    if (notification.namespace !== this.namespace) return;
    try {
      const limit = this.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
      const bytes = encodeWithin(notification, limit, 'EventStored');
      outboxOf(this.nc).publish(this.subjects.eventStored(notification, notification.shard), bytes, undefined, (error) => this.report(error));
    } catch (error) {
      this.report(error);
    }
  }

  subscribeToEventStored(handler: EventStoredHandler, filter?: EventStoredFilter): Unsubscribe {
    if (this.closed) throw new ClosedError('NATSEventBus');
    const subscription = this.nc.subscribe(this.subjects.eventStoredFilter(filter), {
      // Runs inside the client's protocol parser: nothing may escape from here.
      callback: (error, msg) => {
        if (error) {
          this.report(error);
          return;
        }
        const notification = this.accept(msg);
        if (notification) this.run(handler, notification);
      },
    });
    this.subscriptions.add(subscription);
    return () => {
      if (!this.subscriptions.delete(subscription)) return;
      subscription.unsubscribe();
    };
  }

  /**
   * Resolves after a round trip to the server: everything published so far has reached
   * it, and every subscription made so far is live. A subscription is set up
   * asynchronously, so a notification another node publishes before then can be missed.
   */
  async flush(): Promise<void> {
    await outboxOf(this.nc).flush();
  }

  /** Drains this bus's subscriptions; the connection belongs to the caller and stays open. */
  async close(): Promise<void> {
    this.closed = true;
    const subscriptions = [...this.subscriptions];
    this.subscriptions.clear();
    if (this.nc.isClosed()) return;
    // A drain fails only when the connection closes under it, which ends the subscription too.
    await Promise.all(subscriptions.map((subscription) => subscription.drain().catch(() => undefined)));
  }

  /**
   * Decodes a received message and checks it belongs on the subject it came in on, so a
   * foreign or forged publish cannot pose as another actor's or namespace's notification.
   */
  private accept(msg: Msg): EventStored | undefined {
    try {
      const notification = decode(msg.data, isEventStored, 'EventStored');
      if (notification.namespace !== this.namespace || this.subjects.eventStored(notification, notification.shard) !== msg.subject) {
        throw new DecodeError(
          'EventStored',
          `namespace "${notification.namespace}", type "${notification.type}", id "${notification.id}", shard ${notification.shard ?? 'none'} do not belong on subject ${msg.subject}`,
        );
      }
      return notification;
    } catch (error) {
      this.report(error);
      return undefined;
    }
  }

  private run(handler: EventStoredHandler, notification: EventStored): void {
    try {
      const result: unknown = handler(notification);
      if (result instanceof Promise) result.catch((error: unknown) => this.report(error));
    } catch (error) {
      this.report(error);
    }
  }

  private report(error: unknown): void {
    reportError(this.onError, error);
  }
}
