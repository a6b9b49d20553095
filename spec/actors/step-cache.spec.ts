/**
 * `StepCache` must be indistinguishable from XState's `transition`: on the migration
 * machine over every state and event the graph reaches (steps learned on one actor and
 * reused on another), and on small machines built to break it (a guard or action that
 * reads a field the key leaves out), where it must refuse to remember.
 */
import { expect } from 'chai';
import { assign, initialTransition, setup, transition, type AnyEventObject, type AnyStateMachine } from 'xstate';
import { getSimplePaths } from 'xstate/graph';
import { ActorType } from '../../lib/actors/actor-type.js';
import { StepCache, type Stepped } from '../../lib/actors/step-cache.js';
import {
  initialMigrationStatus,
  migrationContext,
  migrationDecisionKeys,
  migrationMachine,
  migrationRecordedEventFields,
  type MigrationContext,
  type MigrationEvent,
  type MigrationInput,
} from '../../machines/migration.machine.js';
import { MIGRATION_EVENTS } from '../support/migration-events.js';

const EVENTS = MIGRATION_EVENTS;

const inputFor = (actorId: string, maxAttempts: number): MigrationInput => ({ actorType: 'account', actorId, from: 'node-a', to: 'node-b', planId: `plan-${actorId}`, epoch: 4, maxAttempts });

/** Every event log that leads somewhere: each simple path to a final state, and every prefix of it. */
function logs(maxAttempts: number): MigrationEvent[][] {
  const out = new Map<string, MigrationEvent[]>();
  for (const status of ['Deleted', 'Failed']) {
    const paths = getSimplePaths(migrationMachine, { input: inputFor('x', maxAttempts), events: EVENTS, toState: (s) => s.value === status });
    for (const path of paths) {
      const events = path.steps.slice(1).map((step) => step.event);
      for (let i = 0; i <= events.length; i++) out.set(JSON.stringify(events.slice(0, i)), events.slice(0, i));
    }
  }
  return [...out.values()];
}

/** XState's own run: the initial snapshot, then `transition` per event; the value and context of each. */
function byXState(machine: AnyStateMachine, input: unknown, events: readonly AnyEventObject[]): { value: unknown; context: unknown }[] {
  let [snapshot] = initialTransition(machine, input);
  const seen = [{ value: snapshot.value, context: snapshot.context }];
  for (const event of events) {
    [snapshot] = transition(machine, snapshot, event);
    seen.push({ value: snapshot.value, context: snapshot.context });
  }
  return seen;
}

function byCache(cache: StepCache<any, any>, start: Stepped<any, any>, events: readonly AnyEventObject[]): { value: unknown; context: unknown }[] {
  let current = start;
  const seen = [{ value: current.state.value, context: current.state.context }];
  for (const event of events) {
    current = cache.next(current, event);
    seen.push({ value: current.state.value, context: current.state.context });
  }
  return seen;
}

describe('StepCache', () => {
  describe('on the migration machine', () => {
    for (const maxAttempts of [1, 2, 3]) {
      it(`agrees with XState after every event in every reachable state (maxAttempts ${maxAttempts}), steps learned on one actor reused on others`, () => {
        const cache = new StepCache<string, MigrationContext>(new ActorType('m', migrationMachine), migrationDecisionKeys, migrationRecordedEventFields);
        let compared = 0;
        for (const log of logs(maxAttempts)) {
          for (const last of EVENTS) {
            const events = [...log, last];
            // Two actors through the same log: the second one runs on what the first taught.
            for (const actorId of ['acc-1', 'acc-2']) {
              const input = inputFor(actorId, maxAttempts);
              const start = { state: { value: initialMigrationStatus, context: migrationContext(input) } };
              expect(byCache(cache, start, events), `${actorId}: ${JSON.stringify(events)}`).to.deep.equal(byXState(migrationMachine, input, events));
              compared++;
            }
          }
        }
        const { hits, learned } = cache.stats();
        expect(compared).to.be.greaterThan(100);
        // Learned once per state, event type and attempt count; reused from then on.
        expect(learned).to.be.greaterThan(5).and.lessThan(200);
        expect(hits).to.be.greaterThan(compared);
      });
    }

    it('starts where the machine starts: the initial status and context match XState', () => {
      const input = inputFor('acc-9', 0);
      const [snapshot] = initialTransition(migrationMachine, input);
      expect({ value: initialMigrationStatus, context: migrationContext(input) }).to.deep.equal({ value: snapshot.value, context: snapshot.context });
    });

    it('remembers CAPTURED with its version copied, and sends NACK (its retryable decides) to XState every time', () => {
      const cache = new StepCache<string, MigrationContext>(new ActorType('m', migrationMachine), migrationDecisionKeys, migrationRecordedEventFields);
      const capturing = (actorId: string) => ({ state: { value: 'Capturing', context: migrationContext(inputFor(actorId, 3)) } });
      for (let version = 1; version <= 3; version++) {
        const captured: MigrationEvent = { type: 'CAPTURED', version };
        const { value, context } = cache.next(capturing(`a-${version}`), captured).state;
        expect({ value, context }).to.deep.equal({ value: 'Transferring', context: { ...migrationContext(inputFor(`a-${version}`, 3)), version, attempts: 1 } });
      }
      expect(cache.stats()).to.deep.equal({ hits: 2, misses: 1, learned: 1 });
      const transferring = cache.next(capturing('b'), { type: 'CAPTURED', version: 9 } satisfies MigrationEvent);
      for (const retryable of [true, false, true]) {
        const next = cache.next(transferring, { type: 'NACK', reason: 'busy', retryable } satisfies MigrationEvent);
        expect(next.state.value).to.equal(retryable ? 'Transferring' : 'Failed');
      }
      expect(cache.stats()).to.include({ misses: 4, learned: 1 });
    });
  });

  describe('on machines that read what the key leaves out', () => {
    /** Same events to two contexts that differ only outside the key; each must come out as XState says. */
    function agrees(machine: AnyStateMachine, decisionKeys: string[], inputs: unknown[], events: AnyEventObject[], recorded: Record<string, string[]> = {}): StepCache {
      const cache = new StepCache(new ActorType('t', machine), decisionKeys, recorded);
      for (let round = 0; round < 2; round++) {
        for (const input of inputs) {
          const [initial] = initialTransition(machine, input);
          const start = { state: { value: initial.value, context: initial.context } };
          expect(byCache(cache, start, events), JSON.stringify(input)).to.deep.equal(byXState(machine, input, events));
        }
      }
      return cache;
    }

    it('never remembers a step whose guard reads another field: each actor takes its own branch', () => {
      const machine = setup({ types: { context: {} as { owner: string; n: number }, input: {} as { owner: string } } }).createMachine({
        context: ({ input }) => ({ owner: input.owner, n: 0 }),
        initial: 'a',
        states: { a: { on: { GO: [{ guard: ({ context }) => context.owner === 'me', target: 'mine' }, { target: 'theirs' }] } }, mine: {}, theirs: {} },
      });
      const cache = agrees(machine, ['n'], [{ owner: 'me' }, { owner: 'you' }], [{ type: 'GO' }]);
      expect(cache.stats().learned).to.equal(1);
      expect(cache.stats().hits).to.equal(0);
    });

    it('never remembers a step whose action copies another field', () => {
      const machine = setup({ types: { context: {} as { name: string; label?: string; n: number }, input: {} as { name: string } } }).createMachine({
        context: ({ input }) => ({ name: input.name, n: 0 }),
        initial: 'a',
        states: { a: { on: { GO: { target: 'b', actions: assign(({ context }) => ({ label: `[${context.name}]`, n: context.n + 1 })) } } }, b: {} },
      });
      const cache = agrees(machine, ['n'], [{ name: 'x' }, { name: 'y' }], [{ type: 'GO' }]);
      expect(cache.stats().hits).to.equal(0);
    });

    it('remembers a constant write even where the field held that value already, and counts from the key', () => {
      const machine = setup({ types: { context: {} as { id: string; error?: string; tries: number }, input: {} as { id: string; error?: string } } }).createMachine({
        context: ({ input }) => ({ id: input.id, error: input.error, tries: 0 }),
        initial: 'on',
        states: { on: { on: { TICK: { actions: assign(({ context }) => ({ error: 'timeout', tries: context.tries + 1 })) } } } },
      });
      // The first actor already holds "timeout"; a step learned there must still write it for the second.
      const cache = agrees(machine, ['tries'], [{ id: 'a', error: 'timeout' }, { id: 'b', error: 'other' }, { id: 'c' }], [{ type: 'TICK' }, { type: 'TICK' }]);
      expect(cache.stats().hits).to.be.greaterThan(0);
    });

    it('never remembers a step whose guard reads a field named recorded, when the probe changes its outcome', () => {
      const machine = setup({ types: { context: {} as { n: number; last?: number }, events: {} as { type: 'PUT'; amount: number } } }).createMachine({
        context: { n: 0 },
        initial: 'low',
        states: {
          low: { on: { PUT: [{ guard: ({ event }) => event.amount > 0, target: 'high', actions: assign(({ event }) => ({ last: event.amount })) }, { actions: assign(({ event }) => ({ last: event.amount })) }] } },
          high: {},
        },
      });
      const cache = new StepCache(new ActorType('t', machine), ['n'], { PUT: ['amount'] });
      const low = { state: { value: 'low', context: { n: 0 } } };
      // Learned on the first (the probe goes the other way), then each amount takes its own branch.
      for (const amount of [1, -1, 2, -2]) expect(cache.next(low, { type: 'PUT', amount }).state.value, `amount ${amount}`).to.equal(amount > 0 ? 'high' : 'low');
      expect(cache.stats()).to.include({ hits: 0, misses: 4 });
    });

    it('keys on which recorded fields an event carries', () => {
      const machine = setup({ types: { context: {} as { n: number; a?: number; b?: number }, events: {} as { type: 'SET'; a?: number; b?: number } } }).createMachine({
        context: { n: 0 },
        initial: 'on',
        states: { on: { on: { SET: { actions: assign(({ event }) => ({ ...('a' in event ? { a: event.a } : {}), ...('b' in event ? { b: event.b } : {}) })) } } } },
      });
      const cache = agrees(machine, ['n'], [undefined], [{ type: 'SET', a: 1 }, { type: 'SET', b: 2 }, { type: 'SET', a: 3, b: 4 }, { type: 'SET', a: 5 }], { SET: ['a', 'b'] });
      expect(cache.stats()).to.include({ learned: 3 });
      expect(cache.stats().hits).to.be.greaterThan(0);
    });

    it('does not key on a decision field that holds an object', () => {
      const machine = setup({ types: { context: {} as { opts: { fast: boolean } }, input: {} as { fast: boolean } } }).createMachine({
        context: ({ input }) => ({ opts: { fast: input.fast } }),
        initial: 'a',
        states: { a: { on: { GO: [{ guard: ({ context }) => context.opts.fast, target: 'fast' }, { target: 'slow' }] } }, fast: {}, slow: {} },
      });
      const cache = agrees(machine, ['opts'], [{ fast: true }, { fast: false }], [{ type: 'GO' }]);
      expect(cache.stats()).to.include({ hits: 0, learned: 0 });
    });
  });
});
