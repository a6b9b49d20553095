import { expect } from 'chai';
import { StallWatch } from '../../lib/cluster/stall-watch.js';

describe('StallWatch', () => {
  it('counts nothing lost while the timer runs on time or late by no more than the threshold', () => {
    const watch = new StallWatch(100, 200);
    watch.start(1_000);
    expect(watch.lost(1_100)).to.equal(0);
    expect(watch.lost(1_300)).to.equal(0); // exactly the threshold
    expect(watch.overdue(1_500)).to.equal(false);
  });

  it('counts the time past one period as lost once a run comes later than the threshold, and starts over from that run', () => {
    const watch = new StallWatch(100, 200);
    watch.start(1_000);
    expect(watch.overdue(1_201)).to.equal(true);
    expect(watch.lost(1_900)).to.equal(800);
    expect(watch.lost(2_000)).to.equal(0);
  });
});
