import { backends } from '@sparsegrad/core';
import { parse } from '../args.ts';

export const BACKENDS_HELP = `sparsegrad backends
  Lists cpu, webgpu and cuda: whether each is available here, the device it found, or why not.`;

export async function backendsCommand(argv: string[], log: (s: string) => void): Promise<number> {
  const values = parse('backends', argv, { help: { type: 'boolean', short: 'h', default: false } });
  if (values.help) {
    log(BACKENDS_HELP);
    return 0;
  }
  for (const b of await backends()) {
    log(`${b.name.padEnd(7)} ${b.available ? `available    ${b.device}` : `unavailable  ${b.reason}`}`);
  }
  return 0;
}
