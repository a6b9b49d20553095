/**
 * The independent checker of a chaos run. `readHistory` reads every commit of the
 * accounts straight from the JetStream stream with raw nats.js (natstate's event store
 * and its replay are not used: only the stream and subject names come from
 * lib/subjects.ts), and `check` holds them against what the load was told:
 *
 * - lost: acknowledged command ids that no stored event carries;
 * - duplicated: command ids stored more than once (applied twice);
 * - gaps: versions missing from an actor's history (a commit starting past the next version);
 * - divergent: two events at the same version of an actor (a commit starting before the
 *   next version), a stored event that differs from the command sent (amount, type, or a
 *   deposit answered "not accepted", which the machine never does), an acknowledged version that is not the
 *   version the event has in the stream, or a live cluster whose version of an account
 *   is not the stream's;
 * - balanceMismatches: accounts whose balance folded from the stream is not the balance
 *   the live cluster reports, or is below the sum of its acknowledged deposits (deposits
 *   without a reply that are in the stream were applied, and count);
 * - unanswered: commands that got neither a reply nor a typed error within the deadline.
 */
import type { NatsConnection } from '@nats-io/nats-core';
import { DeliverPolicy, jetstreamManager } from '@nats-io/jetstream';
import { Subjects, decodeToken } from '../lib/subjects.js';
import type { CommandRecord } from './load.js';

/** One commit as stored: a JetStream message on an actor's subject. */
export interface RawCommit {
  readonly seq: number;
  /** Version of the actor after the commit. */
  readonly version: number;
  readonly commandIds: readonly string[];
  readonly events: readonly { readonly type: string; readonly amount?: unknown }[];
}

/** What the live cluster answers for one account, or why it did not. */
export type LiveAccount = { readonly balance: number; readonly version: number } | { readonly error: string };

/** The counts a passing run has at 0 (see the module comment). */
export interface Invariants {
  readonly lost: number;
  readonly duplicated: number;
  readonly gaps: number;
  readonly divergent: number;
  readonly balanceMismatches: number;
  readonly unanswered: number;
}

export interface Findings extends Invariants {
  /** Commands with no reply (errored or unanswered) found in the stream: applied, so they count. */
  readonly appliedWithoutReply: number;
  /** Events stored in the accounts' streams. */
  readonly storedEvents: number;
  /** One line per violation (the first ones), for the report. */
  readonly details: readonly string[];
}

function parseCommit(data: Uint8Array, where: string): RawCommit {
  // natstate writes a superjson envelope; deposits are plain JSON, so `json` is the commit.
  const envelope = JSON.parse(new TextDecoder().decode(data)) as { json?: unknown; meta?: unknown };
  const commit = envelope.json as Partial<RawCommit> | undefined;
  if (
    envelope.meta !== undefined ||
    !commit ||
    typeof commit.version !== 'number' ||
    !Array.isArray(commit.events) ||
    !Array.isArray(commit.commandIds) ||
    commit.events.length === 0 ||
    commit.events.length !== commit.commandIds.length
  ) {
    throw new Error(`${where}: not a commit of plain JSON deposits`);
  }
  return { seq: 0, version: commit.version, commandIds: commit.commandIds, events: commit.events };
}

/** Every commit of every actor of `type`, by actor id, in stream order. */
export async function readHistory(nc: NatsConnection, namespace: string, type: string): Promise<Map<string, RawCommit[]>> {
  const subjects = new Subjects(namespace);
  const filter = subjects.typeEvents(type);
  const prefix = filter.slice(0, -1);
  const history = new Map<string, RawCommit[]>();
  const jsm = await jetstreamManager(nc, { timeout: 10_000 });
  const last = await jsm.streams.getMessage(subjects.eventStream, { last_by_subj: filter }).catch(() => null);
  if (!last) return history;
  const consumer = await jsm.jetstream().consumers.get(subjects.eventStream, { deliver_policy: DeliverPolicy.All, filter_subjects: filter });
  const messages = await consumer.consume({ max_messages: 1_024 });
  try {
    for await (const msg of messages) {
      if (!msg.subject.startsWith(prefix)) throw new Error(`a message on ${msg.subject} passed the filter ${filter}`);
      const id = decodeToken(msg.subject.slice(prefix.length));
      const commit = { ...parseCommit(msg.data, `sequence ${msg.seq} (${msg.subject})`), seq: msg.seq };
      const commits = history.get(id) ?? [];
      commits.push(commit);
      history.set(id, commits);
      if (msg.seq >= last.seq) break;
    }
  } finally {
    messages.stop();
  }
  return history;
}

/** The fewest replicas among the namespace's event stream and its two KV buckets (as JetStream reports them). */
export async function fewestReplicas(nc: NatsConnection, namespace: string): Promise<number> {
  const subjects = new Subjects(namespace);
  const jsm = await jetstreamManager(nc, { timeout: 10_000 });
  // A KV bucket is the stream KV_<bucket>.
  const streams = [subjects.eventStream, `KV_${subjects.snapshotBucket}`, `KV_${subjects.clusterBucket}`];
  const replicas = await Promise.all(streams.map(async (name) => (await jsm.streams.info(name)).config.num_replicas));
  return Math.min(...replicas);
}

const MAX_DETAILS = 40;

export function check(commands: readonly CommandRecord[], history: ReadonlyMap<string, readonly RawCommit[]>, live: ReadonlyMap<string, LiveAccount>): Findings {
  const details: string[] = [];
  const note = (line: string) => {
    if (details.length < MAX_DETAILS) details.push(line);
  };
  const sent = new Map(commands.map((c) => [c.commandId, c]));
  /** Where each command id is stored: account and version, one entry per occurrence. */
  const stored = new Map<string, { account: string; version: number }[]>();
  let gaps = 0;
  let divergent = 0;
  let storedEvents = 0;
  const folded = new Map<string, { balance: number; version: number }>();

  for (const [account, commits] of history) {
    let next = 1;
    let balance = 0;
    for (const commit of commits) {
      const base = commit.version - commit.events.length;
      if (base + 1 > next) {
        gaps += base + 1 - next;
        note(`gap: ${account} jumps from version ${next - 1} to ${base + 1} at sequence ${commit.seq}`);
      } else if (base + 1 < next) {
        divergent += next - (base + 1);
        note(`divergent: ${account} has a second history from version ${base + 1} at sequence ${commit.seq} (already at ${next - 1})`);
      }
      commit.events.forEach((event, i) => {
        const commandId = commit.commandIds[i];
        const version = base + i + 1;
        storedEvents++;
        stored.set(commandId, [...(stored.get(commandId) ?? []), { account, version }]);
        if (event.type === 'DEPOSIT' && typeof event.amount === 'number') balance += event.amount;
        const command = sent.get(commandId);
        if (command && (command.account !== account || event.type !== 'DEPOSIT' || event.amount !== command.amount)) {
          divergent++;
          note(`divergent: ${commandId} was sent as DEPOSIT ${command.amount} to ${command.account}, stored as ${JSON.stringify(event)} in ${account}`);
        }
      });
      next = Math.max(next, commit.version + 1);
    }
    folded.set(account, { balance, version: next - 1 });
  }

  let lost = 0;
  let duplicated = 0;
  let unanswered = 0;
  let appliedWithoutReply = 0;
  const acknowledgedSum = new Map<string, number>();
  for (const command of commands) {
    const places = stored.get(command.commandId) ?? [];
    if (places.length > 1) {
      duplicated++;
      note(`duplicated: ${command.commandId} stored ${places.length} times (${places.map((p) => `${p.account}@${p.version}`).join(', ')})`);
    }
    if (command.outcome === 'unanswered') {
      unanswered++;
      note(`unanswered: ${command.commandId} to ${command.account}: ${command.error ?? ''}`);
    }
    if (command.outcome === 'acknowledged') {
      acknowledgedSum.set(command.account, (acknowledgedSum.get(command.account) ?? 0) + command.amount);
      if (places.length === 0) {
        lost++;
        note(`lost: ${command.commandId} (DEPOSIT ${command.amount} to ${command.account}) was acknowledged at version ${command.version} and is not stored`);
      } else if (!places.some((p) => p.version === command.version)) {
        divergent++;
        note(`divergent: ${command.commandId} was acknowledged at version ${command.version} of ${command.account}, stored at ${places.map((p) => p.version).join(', ')}`);
      }
    } else if (command.outcome === 'rejected') {
      // A positive deposit to an open account is always accepted: the reply contradicts the machine.
      divergent++;
      note(`divergent: ${command.commandId} (DEPOSIT ${command.amount} to ${command.account}) was answered "not accepted"${places.length > 0 ? ' and is stored' : ''}`);
    } else if ((command.outcome === 'errored' || command.outcome === 'unanswered') && places.length > 0) {
      appliedWithoutReply++;
    }
  }

  let balanceMismatches = 0;
  const accounts = new Set([...history.keys(), ...acknowledgedSum.keys()]);
  for (const account of accounts) {
    const fold = folded.get(account) ?? { balance: 0, version: 0 };
    const acknowledged = acknowledgedSum.get(account) ?? 0;
    const answer = live.get(account) ?? { error: 'not asked' };
    if ('error' in answer) {
      balanceMismatches++;
      note(`balance: the live cluster did not answer for ${account}: ${answer.error}`);
      continue;
    }
    if (answer.balance !== fold.balance || fold.balance < acknowledged) {
      balanceMismatches++;
      note(`balance: ${account} live ${answer.balance}, stream ${fold.balance}, acknowledged deposits ${acknowledged}`);
    }
    if (answer.version !== fold.version) {
      divergent++;
      note(`divergent: the live cluster has ${account} at version ${answer.version}, the stream at ${fold.version}`);
    }
  }

  return { lost, duplicated, gaps, divergent, balanceMismatches, unanswered, appliedWithoutReply, storedEvents, details };
}
