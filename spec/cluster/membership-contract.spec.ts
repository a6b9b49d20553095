import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import type { ClusterKV } from '../../lib/cluster/kv/kv.js';
import { MemoryKV, MemoryKVBucket } from '../../lib/cluster/kv/memory.js';
import { NatsKV } from '../../lib/cluster/kv/nats.js';
import { membershipContract } from '../contract/membership.contract.js';
import { NatsServer } from '../support/nats-server.js';

describe('Membership and LeaderLease over each ClusterKV', () => {
  // Every node of an embedded network holds its own handle on one shared bucket.
  membershipContract('MemoryKV', async () => {
    const bucket = new MemoryKVBucket();
    const handles: ClusterKV[] = [];
    return {
      kv: async () => {
        const kv = new MemoryKV(bucket);
        handles.push(kv);
        return kv;
      },
      close: async () => {
        await Promise.all(handles.splice(0).map((kv) => kv.close()));
      },
    };
  });

  describe('on a real nats-server', function () {
    this.timeout(20_000);
    let server: NatsServer;
    let counter = 0;

    before(async () => {
      server = await NatsServer.start();
    });

    after(async () => {
      await server?.stop();
    });

    // A fresh bucket per spec; each node has its own connection, as a process of the cluster would.
    membershipContract('NatsKV', async () => {
      counter += 1;
      const namespace = `membership-${process.pid}-${counter}`;
      const connections: NatsConnection[] = [];
      const handles: ClusterKV[] = [];
      return {
        kv: async () => {
          const nc = await connect({ servers: server.url });
          connections.push(nc);
          const kv = await NatsKV.create(nc, { namespace, storage: 'memory' });
          handles.push(kv);
          return kv;
        },
        close: async () => {
          await Promise.all(handles.splice(0).map((kv) => kv.close()));
          await Promise.all(connections.splice(0).map((nc) => nc.close()));
        },
      };
    });
  });
});
