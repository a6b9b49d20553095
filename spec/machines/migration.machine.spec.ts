/**
 * Model-based specs for the migration machine: `xstate/graph` enumerates the paths the
 * machine allows under a finite event alphabet, and every path is replayed on a real
 * actor, so the graph (pure `transition`) and the running actor are checked against
 * each other and against invariants derived from the documented protocol.
 */
import { expect } from 'chai';
import { createActor, initialTransition, transition } from 'xstate';
import { getPathsFromEvents, getShortestPaths, getSimplePaths, type StatePath } from 'xstate/graph';
import {
  backoffMs,
  isFinalMigration,
  migrationMachine,
  migrationStatus,
  type MigrationContext,
  type MigrationEvent,
  type MigrationInput,
  type MigrationSnapshot,
  type MigrationStatus,
} from '../../machines/migration.machine.js';
import { CAPTURED_VERSION, MIGRATION_EVENTS } from '../support/migration-events.js';

type Path = StatePath<MigrationSnapshot, MigrationEvent>;

const VERSION = CAPTURED_VERSION;
const EVENTS = MIGRATION_EVENTS;

/** Everything a migration can go through, in protocol order (Failed sits outside it). */
const ORDER: readonly MigrationStatus[] = ['Pending', 'Paused', 'Capturing', 'Transferring', 'Acked', 'Deleted'];
const ALL_STATUSES: readonly MigrationStatus[] = [...ORDER, 'Failed'];

const inputFor = (maxAttempts?: number): MigrationInput => ({
  actorType: 'account',
  actorId: 'acc-1',
  from: 'node-a',
  to: 'node-b',
  planId: 'plan-1',
  epoch: 4,
  ...(maxAttempts === undefined ? {} : { maxAttempts }),
});

const eventsOf = (path: Path): MigrationEvent[] => path.steps.slice(1).map((step) => step.event);

function simplePathsTo(status: MigrationStatus, maxAttempts: number): Path[] {
  return getSimplePaths(migrationMachine, {
    input: inputFor(maxAttempts),
    events: EVENTS,
    toState: (snapshot) => snapshot.value === status,
  });
}

/** Runs a log on a fresh, real actor; returns every snapshot, the initial one first. */
function replay(input: MigrationInput, events: readonly MigrationEvent[]): MigrationSnapshot[] {
  const actor = createActor(migrationMachine, { input }).start();
  const seen = [actor.getSnapshot()];
  for (const event of events) {
    actor.send(event);
    seen.push(actor.getSnapshot());
  }
  actor.stop();
  return seen;
}

const isRetry = (event: MigrationEvent): boolean =>
  event.type === 'TIMEOUT' || (event.type === 'NACK' && event.retryable);

/**
 * Invariants of one replayed run, derived from the protocol rather than from the
 * machine's code: ordering, attempt accounting, version and error bookkeeping.
 */
function checkRun(input: MigrationInput, events: readonly MigrationEvent[], seen: readonly MigrationSnapshot[]): void {
  const maxAttempts = Math.max(1, input.maxAttempts ?? 3);
  let rank = 0;
  let expectedAttempts = 0;
  for (let i = 0; i < seen.length; i++) {
    const snapshot = seen[i];
    const status = migrationStatus(snapshot);
    const { context } = snapshot;
    const where = `step ${i} (${status}) of ${JSON.stringify(events)}`;

    // The identity of the migration never changes.
    expect(context.actorType, where).to.equal(input.actorType);
    expect(context.actorId, where).to.equal(input.actorId);
    expect(context.from, where).to.equal(input.from);
    expect(context.to, where).to.equal(input.to);
    expect(context.planId, where).to.equal(input.planId);
    expect(context.epoch, where).to.equal(input.epoch);
    expect(context.maxAttempts, where).to.equal(maxAttempts);

    expect(context.attempts, where).to.be.at.most(context.maxAttempts);
    expect(isFinalMigration(status), where).to.equal(snapshot.status === 'done');

    if (i > 0) {
      const event = events[i - 1];
      const previous = migrationStatus(seen[i - 1]);
      // Attempts counted independently: CAPTURED opens attempt 1, each retry that keeps
      // the transfer going opens the next one; a failing retry opens none.
      if (event.type === 'CAPTURED' && status === 'Transferring') expectedAttempts = 1;
      if (isRetry(event) && previous === 'Transferring' && status === 'Transferring') expectedAttempts++;
      if (previous === 'Deleted' || previous === 'Failed') expect(status, where).to.equal(previous);
    }
    expect(context.attempts, where).to.equal(expectedAttempts);

    if (status === 'Failed') {
      expect(context.error, where).to.be.a('string').and.not.equal('');
    } else {
      const at = ORDER.indexOf(status);
      expect(at, `${where}: statuses go forward only`).to.be.at.least(rank);
      rank = at;
    }
    if (status === 'Deleted') {
      const before = seen.slice(0, i).map(migrationStatus);
      expect(before.filter((s) => s !== 'Deleted').at(-1), `${where}: Deleted only after Acked`).to.equal('Acked');
    }
    // Once captured, the version sticks; before it there is none.
    if (expectedAttempts > 0) expect(context.version, where).to.equal(VERSION);
    else expect(context.version, where).to.equal(undefined);
  }
}

describe('migration machine (model-based)', () => {
  for (const maxAttempts of [2, 3]) {
    describe(`with maxAttempts ${maxAttempts}`, () => {
      const input = inputFor(maxAttempts);

      /**
       * Expected counts, derived by hand from the protocol, not by running the machine:
       * the retry events (NACK retryable, TIMEOUT) record different errors, so the
       * Transferring vertices form a binary tree of depth m-1: 2^m - 1 of them, 2^(m-1)
       * on the last attempt. Every vertex reaches Acked once, hence Deleted once.
       * Failed: FAIL from Pending/Paused/Capturing (3), FAIL and non-retryable NACK from
       * every Transferring vertex, FAIL from every Acked vertex, and both retry events
       * from every last-attempt vertex.
       */
      const transferring = 2 ** maxAttempts - 1;
      const expectedToDeleted = transferring;
      const expectedToFailed = 3 + 2 * transferring + transferring + 2 * 2 ** (maxAttempts - 1);

      it(`enumerates exactly ${expectedToDeleted} simple paths to Deleted and replays each on a real actor with the invariants holding`, () => {
        const paths = simplePathsTo('Deleted', maxAttempts);
        expect(paths).to.have.length(expectedToDeleted);
        for (const path of paths) {
          const events = eventsOf(path);
          const seen = replay(input, events);
          // The actor agrees with the graph at every step, not just at the end.
          path.steps.forEach((step, i) => {
            expect(seen[i].value).to.equal(step.state.value);
            expect(seen[i].context).to.deep.equal(step.state.context);
          });
          expect(migrationStatus(seen.at(-1)!)).to.equal('Deleted');
          expect(seen.at(-1)!.status).to.equal('done');
          checkRun(input, events, seen);
        }
      });

      it(`enumerates exactly ${expectedToFailed} simple paths to Failed and replays each with an error recorded and the invariants holding`, () => {
        const paths = simplePathsTo('Failed', maxAttempts);
        expect(paths).to.have.length(expectedToFailed);
        for (const path of paths) {
          const events = eventsOf(path);
          const seen = replay(input, events);
          path.steps.forEach((step, i) => {
            expect(seen[i].value).to.equal(step.state.value);
            expect(seen[i].context).to.deep.equal(step.state.context);
          });
          const last = seen.at(-1)!;
          expect(migrationStatus(last)).to.equal('Failed');
          expect(last.status).to.equal('done');
          // The recorded error names the event that failed the migration.
          const cause = events.at(-1)!;
          const reason = cause.type === 'TIMEOUT' ? 'timeout' : 'reason' in cause ? cause.reason : undefined;
          expect(last.context.error).to.equal(reason);
          checkRun(input, events, seen);
        }
      });

      it('reaches exactly the seven declared statuses and no other', () => {
        const reached = new Set(
          getShortestPaths(migrationMachine, { input, events: EVENTS }).map((path) => migrationStatus(path.state)),
        );
        expect([...reached].sort()).to.deep.equal([...ALL_STATUSES].sort());
        expect(Object.keys(migrationMachine.root.states).sort()).to.deep.equal([...ALL_STATUSES].sort());
      });

      it('leaves both final states unchanged by every event, with the actor done', () => {
        const finals = getShortestPaths(migrationMachine, {
          input,
          events: EVENTS,
          toState: (snapshot) => isFinalMigration(migrationStatus(snapshot)),
        });
        expect(new Set(finals.map((path) => path.state.value))).to.deep.equal(new Set(['Deleted', 'Failed']));
        for (const path of finals) {
          expect(path.state.status).to.equal('done');
          for (const event of EVENTS) {
            // Pure transition: no way out of a final state.
            const [next] = transition(migrationMachine, path.state, event);
            expect(next.value).to.equal(path.state.value);
            expect(next.context).to.deep.equal(path.state.context);
            expect(next.status).to.equal('done');
          }
          // The real actor stops at the final state and ignores whatever comes after.
          const actor = createActor(migrationMachine, { input }).start();
          for (const event of eventsOf(path)) actor.send(event);
          const done = actor.getSnapshot();
          expect(done.status).to.equal('done');
          for (const event of EVENTS) actor.send(event);
          expect(actor.getSnapshot()).to.equal(done);
        }
      });
    });
  }

  describe('retry bound', () => {
    const toTransferring: MigrationEvent[] = [{ type: 'PAUSE' }, { type: 'DRAINED' }, { type: 'CAPTURED', version: VERSION }];
    const retries: Record<string, MigrationEvent> = {
      'retryable NACK': { type: 'NACK', reason: 'busy', retryable: true },
      TIMEOUT: { type: 'TIMEOUT' },
    };

    for (const maxAttempts of [1, 2, 3, 5]) {
      for (const [name, retry] of Object.entries(retries)) {
        it(`keeps Transferring through ${maxAttempts - 1} ${name}s and fails on the next one (maxAttempts ${maxAttempts})`, () => {
          const actor = createActor(migrationMachine, { input: inputFor(maxAttempts) }).start();
          for (const event of toTransferring) actor.send(event);
          expect(actor.getSnapshot().context.attempts).to.equal(1);
          for (let retried = 1; retried < maxAttempts; retried++) {
            actor.send(retry);
            expect(migrationStatus(actor.getSnapshot())).to.equal('Transferring');
            expect(actor.getSnapshot().context.attempts).to.equal(retried + 1);
          }
          actor.send(retry);
          const failed = actor.getSnapshot();
          expect(migrationStatus(failed)).to.equal('Failed');
          // The failing event makes no new attempt, so attempts stop at the bound.
          expect(failed.context.attempts).to.equal(maxAttempts);
          expect(failed.context.error).to.equal(retry.type === 'TIMEOUT' ? 'timeout' : 'busy');
        });
      }
    }

    it('agrees with the graph on a mixed NACK/TIMEOUT retry log (getPathsFromEvents)', () => {
      const log: MigrationEvent[] = [...toTransferring, retries.TIMEOUT, retries['retryable NACK'], retries.TIMEOUT];
      // getPathsFromEvents (xstate 5.33) builds its default start state without `input`,
      // so the start state is passed explicitly.
      const [fromState] = initialTransition(migrationMachine, inputFor(3));
      const [path] = getPathsFromEvents(migrationMachine, log, { input: inputFor(3), fromState });
      expect(path.steps.map((step) => step.state.value)).to.deep.equal([
        'Pending',
        'Paused',
        'Capturing',
        'Transferring',
        'Transferring',
        'Transferring',
        'Failed',
      ]);
      expect(path.steps.map((step) => step.state.context.attempts)).to.deep.equal([0, 0, 0, 1, 2, 3, 3]);
      expect(replay(inputFor(3), log).at(-1)!.context).to.deep.equal(path.state.context);
    });

    it('fails on a non-retryable NACK at the first attempt even with attempts to spare', () => {
      const seen = replay(inputFor(5), [...toTransferring, { type: 'NACK', reason: 'refused', retryable: false }]);
      expect(migrationStatus(seen.at(-1)!)).to.equal('Failed');
      expect(seen.at(-1)!.context).to.include({ attempts: 1, error: 'refused' });
    });

    it('defaults maxAttempts to 3 and clamps 0 and negatives to 1, because CAPTURED always makes one attempt', () => {
      expect(createActor(migrationMachine, { input: inputFor() }).getSnapshot().context.maxAttempts).to.equal(3);
      for (const maxAttempts of [0, -2]) {
        const seen = replay(inputFor(maxAttempts), [...toTransferring, { type: 'TIMEOUT' }]);
        expect(seen.at(-1)!.context).to.include({ maxAttempts: 1, attempts: 1 });
        expect(migrationStatus(seen.at(-1)!)).to.equal('Failed');
      }
    });
  });

  describe('helpers', () => {
    it('migrationStatus returns the state value and isFinalMigration is true only for Deleted and Failed', () => {
      for (const status of ALL_STATUSES) {
        expect(migrationStatus({ value: status })).to.equal(status);
        expect(isFinalMigration(status)).to.equal(status === 'Deleted' || status === 'Failed');
      }
    });

    it('backoffMs starts at baseMs, doubles per attempt and stays at maxMs once capped', () => {
      expect(backoffMs(1)).to.equal(50);
      for (let attempts = 1; attempts < 40; attempts++) {
        expect(backoffMs(attempts + 1)).to.equal(Math.min(2000, 2 * backoffMs(attempts)));
      }
      expect([1, 2, 3, 4, 5, 6, 7].map((a) => backoffMs(a))).to.deep.equal([50, 100, 200, 400, 800, 1600, 2000]);
      expect([1, 2, 3, 4].map((a) => backoffMs(a, 10, 35))).to.deep.equal([10, 20, 35, 35]);
    });

    it('backoffMs is baseMs (capped) for zero, negative or NaN attempts', () => {
      for (const attempts of [0, -1, Number.NaN]) expect(backoffMs(attempts)).to.equal(50);
      expect(backoffMs(0, 500, 100)).to.equal(100);
    });

    it('backoffMs stays finite for huge attempts, even without a cap', () => {
      for (const attempts of [1024, 1e9, Number.MAX_SAFE_INTEGER, Number.POSITIVE_INFINITY]) {
        expect(backoffMs(attempts)).to.equal(2000);
        const uncapped = backoffMs(attempts, 50, Number.POSITIVE_INFINITY);
        expect(Number.isFinite(uncapped), `attempts ${attempts}`).to.equal(true);
        expect(uncapped).to.equal(50 * 2 ** 30);
      }
    });
  });

  describe('determinism (the machine is event-sourced)', () => {
    it('replays every enumerated event log to an identical snapshot on a fresh actor and via pure transition', () => {
      for (const maxAttempts of [2, 3]) {
        const input = inputFor(maxAttempts);
        const paths = [...simplePathsTo('Deleted', maxAttempts), ...simplePathsTo('Failed', maxAttempts)];
        expect(paths.length).to.be.greaterThan(0);
        for (const path of paths) {
          const log = eventsOf(path);
          const first = createActor(migrationMachine, { input }).start();
          const second = createActor(migrationMachine, { input }).start();
          for (const event of log) first.send(event);
          for (const event of log) second.send(event);
          expect(second.getPersistedSnapshot()).to.deep.equal(first.getPersistedSnapshot());
          // A JSON round trip, as a persisted log would go through, changes nothing either.
          const third = createActor(migrationMachine, { input }).start();
          for (const event of JSON.parse(JSON.stringify(log)) as MigrationEvent[]) third.send(event);
          expect(third.getPersistedSnapshot()).to.deep.equal(first.getPersistedSnapshot());
          let [pure] = initialTransition(migrationMachine, input);
          for (const event of log) [pure] = transition(migrationMachine, pure, event);
          expect(pure.value).to.equal(first.getSnapshot().value);
          expect(pure.context as MigrationContext).to.deep.equal(first.getSnapshot().context);
        }
      }
    });
  });
});
