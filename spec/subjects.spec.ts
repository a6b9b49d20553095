import { expect } from 'chai';
import { InvalidNameError } from '../lib/errors.js';
import { Subjects } from '../lib/subjects.js';

describe('Subjects', () => {
  const subjects = new Subjects('bank');

  describe('EventStored', () => {
    it('names the shard before the actor, `_` when the writer has none', () => {
      expect(subjects.eventStored({ type: 'account', id: 'a-1' }, 17)).to.equal('natstate.bank.es.17.account.a-1');
      expect(subjects.eventStored({ type: 'account', id: 'a-1' })).to.equal('natstate.bank.es._.account.a-1');
    });

    it('filters on any shard unless one is given, and encodes types and ids', () => {
      expect(subjects.eventStoredFilter()).to.equal('natstate.bank.es.*.*.*');
      expect(subjects.eventStoredFilter({ shard: 0 })).to.equal('natstate.bank.es.0.*.*');
      expect(subjects.eventStoredFilter({ type: 'account' })).to.equal('natstate.bank.es.*.account.*');
      const dotted = subjects.eventStoredFilter({ type: 'account', id: 'a.b', shard: 3 });
      expect(dotted.split('.')).to.have.length(6);
      expect(dotted.startsWith('natstate.bank.es.3.account.')).to.equal(true);
    });

    it('refuses a shard that is not an integer >= 0 with InvalidNameError', () => {
      for (const shard of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
        expect(() => subjects.eventStored({ type: 'account', id: 'a' }, shard), String(shard)).to.throw(InvalidNameError, /invalid shard/);
        expect(() => subjects.eventStoredFilter({ shard }), String(shard)).to.throw(InvalidNameError, /invalid shard/);
      }
    });
  });
});
