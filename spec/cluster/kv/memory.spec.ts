import { MemoryKV, MemoryKVBucket } from '../../../lib/cluster/kv/memory.js';
import { clusterKvContract } from '../../contract/cluster-kv.contract.js';

describe('MemoryKV', () => {
  // Every node of an embedded network holds its own handle on one shared bucket.
  clusterKvContract('MemoryKV', async () => {
    const bucket = new MemoryKVBucket();
    const handles: MemoryKV[] = [];
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
});
