/**
 * `Outbox`: what natstate publishes on one NATS connection (requests, replies, commit
 * notices), written to the socket together once per turn of the event loop.
 *
 * nats.js writes its buffer to the socket in the microtask after the first message it
 * buffers, so messages published from different callbacks of one turn (a command's
 * append, the reply to another node, a notice) mostly leave in a socket write each. A
 * loaded node spent up to 15% of its CPU in those writes, and of two windows of one load
 * seconds apart, the one with two and a half times the write time per command ran a
 * third slower (B9 over NATS; see ARCHITECTURE.md, "One socket write per turn"). Queued here
 * until `setImmediate`, everything published in one turn goes out in one write, after
 * the turn's other work; an idle node sends within the same turn of the loop.
 *
 * One outbox per connection (`outboxOf`), shared by every adapter on it, so their
 * messages keep the order they were published in. `flush` sends what is queued and
 * waits for the server, as `nc.flush()` does for messages published directly.
 */
import type { NatsConnection, PublishOptions } from '@nats-io/nats-core';

interface Outgoing {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly options: PublishOptions | undefined;
  /** What `nc.publish` threw for this message (a closed connection, a payload over the limit). */
  readonly onError: (error: unknown) => void;
}

export class Outbox {
  private queue: Outgoing[] = [];
  private scheduled = false;

  constructor(private readonly nc: NatsConnection) {}

  /** Queues a message; `onError` gets what publishing it threw, if anything. */
  publish(subject: string, data: Uint8Array, options: PublishOptions | undefined, onError: (error: unknown) => void): void {
    this.queue.push({ subject, data, options, onError });
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.send);
  }

  /** Sends everything queued now (in one socket write, when it fits nats.js' buffer). */
  readonly send = (): void => {
    this.scheduled = false;
    const queue = this.queue;
    if (queue.length === 0) return;
    this.queue = [];
    for (const { subject, data, options, onError } of queue) {
      try {
        this.nc.publish(subject, data, options);
      } catch (error) {
        onError(error);
      }
    }
  };

  /** Sends what is queued and resolves once the server has seen it (`nc.flush()`). */
  async flush(): Promise<void> {
    this.send();
    await this.nc.flush();
  }
}

const outboxes = new WeakMap<NatsConnection, Outbox>();

/** The outbox of a connection (made on first use). */
export function outboxOf(nc: NatsConnection): Outbox {
  let outbox = outboxes.get(nc);
  if (!outbox) {
    outbox = new Outbox(nc);
    outboxes.set(nc, outbox);
  }
  return outbox;
}
