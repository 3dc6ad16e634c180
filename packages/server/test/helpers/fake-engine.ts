// A stand-in Engine for backpressure tests: it "generates" a token with a large text delta on every
// event-loop turn, as fast as the server lets it, honours GenerationStream.pause()/resume()/cancel()
// as the real engine does, and counts what it produced, so tests can see when generation stopped.
import { GenerationStream, type Engine, type GenerateRequest, type ModelSpec } from '@zinfer/core';

export interface FakeState {
  generated: number;
  paused: boolean;
  everPaused: boolean;
  cancelled: boolean;
  finished: boolean;
}

export function fakeEngine(deltaBytes: number): { engine: Engine; requests: FakeState[] } {
  const requests: FakeState[] = [];
  const text = 'x'.repeat(deltaBytes);
  const engine: Engine = {
    spec: {} as ModelSpec,
    tokenizer: null,
    offload: null,
    maxContext: 1 << 20,
    kvBlocks: { total: 1, free: 1, blockSize: 16 },
    sequences: { running: 0, waiting: 0 },
    generate(req: GenerateRequest): GenerationStream {
      const max = req.maxTokens ?? 100;
      const st: FakeState = { generated: 0, paused: false, everPaused: false, cancelled: false, finished: false };
      requests.push(st);
      let scheduled = false;
      const schedule = () => {
        if (!scheduled) {
          scheduled = true;
          setImmediate(step);
        }
      };
      const stream = new GenerationStream(requests.length, () => ((st.cancelled = true), schedule()), schedule);
      const end = (finishReason: 'length' | 'abort') => {
        st.finished = true;
        stream.finish({ tokens: Array(st.generated).fill(1), text: text.repeat(st.generated), finishReason, promptTokens: 1 });
      };
      function step(): void {
        scheduled = false;
        if (st.finished) return;
        if (st.cancelled) return end('abort');
        st.paused = stream.paused;
        if (st.paused) {
          st.everPaused = true;
          return; // resume() calls schedule again, as the real engine's loop wakes
        }
        stream.push({ index: st.generated, token: 1, text });
        st.generated++;
        if (st.generated >= max) return end('length');
        schedule();
      }
      schedule();
      return stream;
    },
    step: async () => ({ tokens: 0, sequences: 0, finished: 0, steps: 0 }),
    close: async () => {},
  };
  return { engine, requests };
}
