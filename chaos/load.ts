/**
 * The load of a chaos run: deposits into the bank's accounts at a steady rate, each with
 * its own command id, sent the way a user's client sends them (natstate's `Router` over
 * the NATS transport and the shard map, as `natstate send` does). Every outcome is
 * recorded: the acknowledged reply (version), a typed error (then the command is sent
 * again with the SAME command id, until the retry budget is spent), or nothing at all
 * within the deadline (`unanswered`).
 */
import type { NatsConnection } from '@nats-io/nats-core';
import { NatsKV } from '../lib/cluster/kv/nats.js';
import { Router, type RouterOptions } from '../lib/cluster/router.js';
import { ShardMapStore } from '../lib/cluster/shard-map.js';
import { NatsTransport } from '../lib/cluster/transport/nats.js';
import { NatstateError } from '../lib/errors.js';
import { Subjects } from '../lib/subjects.js';
import { mulberry32 } from '../spec/support/random.js';

export const ACTOR_TYPE = 'account';

export type Outcome = 'pending' | 'acknowledged' | 'rejected' | 'errored' | 'unanswered';

export interface CommandRecord {
  readonly commandId: string;
  readonly account: string;
  readonly amount: number;
  outcome: Outcome;
  /** The actor version the acknowledgement reported. */
  version?: number;
  attempts: number;
  /** The last typed error (or, for `unanswered`, what was seen instead of an answer). */
  error?: string;
}

export interface LoadOptions {
  readonly nc: NatsConnection;
  readonly namespace: string;
  /** Deposits per second. */
  readonly rate: number;
  readonly accounts: number;
  readonly seed: number;
  /** How long the router may route one attempt (retries inside included). */
  readonly routeDeadlineMs: number;
  /** Typed errors are retried (same command id) until this long after the first send. */
  readonly retryBudgetMs: number;
  /** An attempt with neither reply nor typed error this long after the route deadline is unanswered. */
  readonly graceMs: number;
}

/** Stands in for the actor host of a client that owns no shard (routing never hands it a command). */
const NO_HOST: RouterOptions['host'] = {
  validate: () => undefined as never,
  dispatch: () => Promise.reject(new Error('a chaos load client owns no shard')),
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A natstate client that owns no shard: the router, the shard map it routes with, and its transport. */
export class Client {
  private constructor(
    readonly router: Router,
    private readonly shardMap: ShardMapStore,
    private readonly transport: NatsTransport,
    private readonly kv: NatsKV,
  ) {}

  static async open(nc: NatsConnection, namespace: string, routeDeadlineMs: number): Promise<Client> {
    const kv = await NatsKV.create(nc, { namespace, onError: () => {} });
    const shardMap = new ShardMapStore({ kv, subjects: new Subjects(namespace), onError: () => {} });
    const transport = new NatsTransport(nc, namespace, { onError: () => {} });
    await shardMap.start();
    const router = new Router({
      nodeId: `chaos-load-${process.pid}`,
      host: NO_HOST,
      shardMap,
      transport,
      deadlineMs: routeDeadlineMs,
      requestTimeoutMs: Math.min(5_000, routeDeadlineMs),
      maxPayload: nc.info?.max_payload,
    });
    return new Client(router, shardMap, transport, kv);
  }

  async close(): Promise<void> {
    this.shardMap.close();
    await this.transport.close();
    await this.kv.close();
  }
}

export class Load {
  readonly commands = new Map<string, CommandRecord>();
  /** Typed errors seen, retries included. */
  typedErrors = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly random: () => number;
  private stopped = false;
  private loop?: Promise<void>;

  constructor(
    private readonly client: Client,
    private readonly options: LoadOptions,
  ) {
    this.random = mulberry32(options.seed ^ 0x5eed);
  }

  static accountId(index: number): string {
    return `acc-${index}`;
  }

  start(): void {
    this.loop = this.run();
  }

  /** Stops sending and resolves once every command sent has its outcome. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  private async run(): Promise<void> {
    const started = Date.now();
    let sent = 0;
    while (!this.stopped) {
      const due = Math.floor(((Date.now() - started) * this.options.rate) / 1_000);
      for (; sent < due; sent++) this.launch(sent);
      await sleep(10);
    }
  }

  private launch(n: number): void {
    const record: CommandRecord = {
      commandId: `chaos-${this.options.seed}-${n}`,
      account: Load.accountId(Math.floor(this.random() * this.options.accounts)),
      amount: 1 + Math.floor(this.random() * 100),
      outcome: 'pending',
      attempts: 0,
    };
    this.commands.set(record.commandId, record);
    const done = this.deliver(record).finally(() => this.inFlight.delete(done));
    this.inFlight.add(done);
  }

  private async deliver(record: CommandRecord): Promise<void> {
    const { router } = this.client;
    const { routeDeadlineMs, retryBudgetMs, graceMs } = this.options;
    const first = Date.now();
    for (;;) {
      record.attempts++;
      let timer: NodeJS.Timeout | undefined;
      const silence = new Promise<'silence'>((resolve) => (timer = setTimeout(() => resolve('silence'), routeDeadlineMs + graceMs)));
      const attempt = router.sendMessage(ACTOR_TYPE, record.account, { type: 'DEPOSIT', amount: record.amount }, record.commandId, false).then(
        (reply) => ({ reply }),
        (error: unknown) => ({ error }),
      );
      const result = await Promise.race([attempt, silence]);
      clearTimeout(timer);
      if (result === 'silence') {
        record.outcome = 'unanswered';
        record.error = `no reply and no typed error within ${routeDeadlineMs + graceMs} ms (attempt ${record.attempts})`;
        return;
      }
      if ('reply' in result) {
        record.outcome = result.reply.accepted ? 'acknowledged' : 'rejected';
        record.version = result.reply.version;
        return;
      }
      const error = result.error;
      if (!(error instanceof NatstateError)) {
        record.outcome = 'unanswered';
        record.error = `untyped error: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`;
        return;
      }
      this.typedErrors++;
      record.error = `${error.name}: ${error.message}`;
      if (Date.now() - first > retryBudgetMs) {
        record.outcome = 'errored';
        return;
      }
      await sleep(200);
    }
  }
}
