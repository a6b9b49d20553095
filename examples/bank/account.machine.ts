/**
 * A bank account as an XState v5 machine: the actor type used by the examples, the specs,
 * the benchmarks and the demo. `audit` is its one side effect; natstate runs it only
 * after the event is stored, and never during recovery. Override it with
 * `account.provide({ actions: { audit: ... } })`.
 */
import { assign, setup } from 'xstate';

export type AccountEvent =
  | { type: 'DEPOSIT'; amount: number }
  | { type: 'WITHDRAW'; amount: number }
  | { type: 'FREEZE' }
  | { type: 'UNFREEZE' }
  | { type: 'CLOSE' };

export interface AccountContext {
  readonly id: string;
  readonly balance: number;
  readonly deposits: number;
}

export const account = setup({
  types: {
    context: {} as AccountContext,
    events: {} as AccountEvent,
    input: {} as { id: string },
  },
  actions: {
    audit: (_, _params: { kind: string; amount: number }) => {},
  },
  guards: {
    positive: ({ event }) => 'amount' in event && Number.isFinite(event.amount) && event.amount > 0,
    covered: ({ context, event }) => 'amount' in event && event.amount > 0 && event.amount <= context.balance,
    empty: ({ context }) => context.balance === 0,
  },
}).createMachine({
  id: 'account',
  context: ({ input }) => ({ id: input.id, balance: 0, deposits: 0 }),
  initial: 'open',
  states: {
    open: {
      on: {
        DEPOSIT: {
          guard: 'positive',
          actions: [
            assign({
              balance: ({ context, event }) => context.balance + event.amount,
              deposits: ({ context }) => context.deposits + 1,
            }),
            { type: 'audit', params: ({ event }) => ({ kind: 'deposit', amount: event.amount }) },
          ],
        },
        WITHDRAW: {
          guard: 'covered',
          actions: [
            assign({ balance: ({ context, event }) => context.balance - event.amount }),
            { type: 'audit', params: ({ event }) => ({ kind: 'withdrawal', amount: event.amount }) },
          ],
        },
        FREEZE: 'frozen',
        CLOSE: { guard: 'empty', target: 'closed' },
      },
    },
    frozen: { on: { UNFREEZE: 'open' } },
    closed: { type: 'final' },
  },
});
