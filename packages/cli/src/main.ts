import { backendsCommand } from './commands/backends.ts';
import { COMPARE_HELP, compareCommand } from './commands/compare.ts';
import { SAMPLE_HELP, sampleCommand } from './commands/sample.ts';
import { TRAIN_HELP, trainCommand } from './commands/train.ts';
import { CliError } from './errors.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

function version(): string {
  return (JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
}

const USAGE = `usage: sparsegrad <command> [options]

commands:
  train      train a (block-sparse) GPT on a text file or the bundled English corpus
  compare    train dense and sparsified variants on the same budget and write a report with plots
  sample     generate text from a checkpoint
  backends   list the backends, whether they are available here, and why not

sparsegrad --version prints the version.

${TRAIN_HELP}

${COMPARE_HELP}

${SAMPLE_HELP}`;

/** Runs the command line; returns the exit code. Errors become one line on stderr. */
export async function main(argv: string[]): Promise<number> {
  const log = (s: string) => console.log(s);
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'train':
        return await trainCommand(rest, log);
      case 'compare':
        return await compareCommand(rest, log);
      case 'sample':
        return await sampleCommand(rest, log, (s) => process.stdout.write(s));
      case 'backends':
        return await backendsCommand(rest, log);
      case '--version':
      case '-v':
      case 'version':
        log(`sparsegrad ${version()}`);
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        log(USAGE);
        return command === undefined ? 1 : 0;
      default:
        throw new CliError(`unknown command '${command}'; expected train, compare, sample or backends (sparsegrad --help)`);
    }
  } catch (e) {
    const code = e instanceof CliError ? e.code : 1;
    console.error(`sparsegrad: ${(e as Error).message.split('\n')[0]}`);
    if (!(e instanceof CliError) && process.env.SPARSEGRAD_DEBUG) console.error(e);
    return code;
  }
}
