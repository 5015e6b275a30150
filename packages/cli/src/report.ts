import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TrainResult } from './trainer.ts';

export interface VariantResult {
  name: string;
  parameters: number;
  result: TrainResult;
}

const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
/**
 * Bytes of what training keeps per parameter: the fp32 weight, its gradient and AdamW's two
 * moments (16 bytes; a block-sparse layer counts its stored blocks only). This is where block
 * sparsity saves memory; peak memory is mostly activations, which it does not shrink.
 */
export const trainingStateBytes = (parameters: number) => 16 * parameters;

/** The comparison as a markdown table (the first variant is the baseline for the ratios). */
export function comparisonTable(variants: VariantResult[]): string {
  const base = variants[0];
  const rows = variants.map((v) => {
    const r = v.result;
    return `| ${v.name} | ${v.parameters.toLocaleString('en-US')} | ${r.evalLoss.toFixed(4)} | ${((r.evalLoss / base.result.evalLoss - 1) * 100).toFixed(1)}% | ${Math.round(r.tokensPerSec).toLocaleString('en-US')} | ${r.msPerStep.toFixed(1)} | ${(base.result.msPerStep / r.msPerStep).toFixed(2)}x | ${mib(trainingStateBytes(v.parameters))} | ${mib(r.peakBytes)} |`;
  });
  return [
    '| variant | parameters | final eval loss | vs dense | tokens/s | ms/step | step speedup | weights, grads, Adam | peak memory |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

/** Loss curves (training loss smoothed, and eval points) as a Vega-Lite spec. */
function lossSpec(variants: VariantResult[]): object {
  const values: { variant: string; step: number; loss: number; kind: string }[] = [];
  for (const v of variants) {
    let ema: number | null = null;
    for (const h of v.result.history) {
      ema = ema === null ? h.trainLoss : 0.9 * ema + 0.1 * h.trainLoss;
      values.push({ variant: v.name, step: h.step, loss: ema, kind: 'train (EMA)' });
      if (h.evalLoss !== undefined) values.push({ variant: v.name, step: h.step, loss: h.evalLoss, kind: 'eval' });
    }
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    width: 640,
    height: 360,
    background: 'white',
    title: 'Loss (nats/token)',
    data: { values },
    mark: { type: 'line', point: false },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'loss', type: 'quantitative', title: 'loss', scale: { zero: false } },
      color: { field: 'variant', type: 'nominal' },
      strokeDash: { field: 'kind', type: 'nominal', title: null },
    },
  };
}

/** Renders the loss curves to loss.svg, and loss.png when the PNG renderer is available. */
export async function writePlots(dir: string, variants: VariantResult[]): Promise<string[]> {
  const vega = await import('vega');
  const vegaLite = await import('vega-lite');
  const spec = vegaLite.compile(lossSpec(variants) as Parameters<typeof vegaLite.compile>[0]).spec;
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  const files = [join(dir, 'loss.svg')];
  writeFileSync(files[0], svg);
  try {
    const { Resvg } = await import('@resvg/resvg-js');
    const png = new Resvg(svg, { background: 'white', fitTo: { mode: 'width', value: 1280 } }).render().asPng();
    files.push(join(dir, 'loss.png'));
    writeFileSync(files[1], png);
  } catch (e) {
    console.warn(`loss.png not written: ${(e as Error).message.split('\n')[0]}`);
  }
  return files;
}

export function writeReport(dir: string, header: string, variants: VariantResult[], extra: string): string {
  const path = join(dir, 'report.md');
  writeFileSync(path, `${header}\n\n${comparisonTable(variants)}\n\n${extra}\n\n![loss curves](loss.svg)\n`);
  writeFileSync(
    join(dir, 'metrics.json'),
    JSON.stringify(
      variants.map((v) => ({
        name: v.name,
        parameters: v.parameters,
        evalLoss: v.result.evalLoss,
        tokensPerSec: v.result.tokensPerSec,
        msPerStep: v.result.msPerStep,
        trainingStateBytes: trainingStateBytes(v.parameters),
        peakBytes: v.result.peakBytes,
        history: v.result.history,
      })),
      null,
      1,
    ),
  );
  return path;
}
