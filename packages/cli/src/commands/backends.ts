import { backends } from '@sparsegrad/core';

export async function backendsCommand(log: (s: string) => void): Promise<number> {
  for (const b of await backends()) {
    log(`${b.name.padEnd(7)} ${b.available ? `available    ${b.device}` : `unavailable  ${b.reason}`}`);
  }
  return 0;
}
