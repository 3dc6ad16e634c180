// A rank's view of the model's weights: whole tensors where the plan replicates them, and only its
// slice where the plan shards them (read through WeightSource.getSlice when the source can do that
// without reading the whole tensor).
import { sliceTensor, type FloatDType, type HostTensor, type WeightName, type WeightShard, type WeightSource } from '@zinfer/core';

export class ShardedWeights implements WeightSource {
  private readonly shards: Map<WeightName, WeightShard>;

  constructor(private readonly source: WeightSource, shards: readonly WeightShard[], private readonly wanted: readonly WeightName[]) {
    this.shards = new Map(shards.map((s) => [s.weight, s]));
  }

  names(): readonly WeightName[] {
    return this.wanted;
  }

  get(name: WeightName): HostTensor {
    const s = this.shards.get(name);
    if (!s) return this.source.get(name);
    return this.source.getSlice ? this.source.getSlice(name, s.axis, s.start, s.length) : sliceTensor(this.source.get(name), s.axis, s.start, s.length);
  }

  dtypeOf(name: WeightName): FloatDType {
    return this.source.dtypeOf ? this.source.dtypeOf(name) : this.source.get(name).dtype;
  }
}
