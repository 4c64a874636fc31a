import { Command, CommanderError } from 'commander';
import { isVigilError } from '../common/errors.js';

/**
 * Each command, by name, in the order `vigil --help` lists them; its module is imported only when
 * the program needs it. Loading every command's dependencies (onnxruntime, sharp, express, NATS)
 * took ~1.7 s of the ~2.1 s a small command such as `vigil store stats` spent starting up.
 */
const COMMANDS: ReadonlyArray<readonly [string, () => Promise<Command>]> = [
  ['demo', async () => (await import('./cli/commands/demoCommand.js')).demoCommand()],
  ['ask', async () => (await import('./cli/commands/askCommand.js')).askCommand()],
  ['models', async () => (await import('./cli/commands/modelsCommand.js')).modelsCommand()],
  ['chat', async () => (await import('./cli/commands/chatCommand.js')).chatCommand()],
  ['source', async () => (await import('./cli/commands/sourceCommand.js')).sourceCommand()],
  ['clip', async () => (await import('./cli/commands/clipCommand.js')).clipCommand()],
  ['store', async () => (await import('./cli/commands/storeCommand.js')).storeCommand()],
  ['serve', async () => (await import('./cli/commands/serveCommand.js')).serveCommand()],
  ['eval', async () => (await import('./cli/commands/evalCommand.js')).evalCommand()],
  ['watch', async () => (await import('./cli/commands/watchCommand.js')).watchCommand()],
  ['cluster', async () => (await import('./cli/commands/clusterCommand.js')).clusterCommand()],
];

/**
 * The program with the command `argv` names (argv as process.argv: node, script, arguments), or
 * with every command when the first argument names none (`--help`, `help`, a typo: commander then
 * lists them all or suggests the closest).
 */
export async function buildProgram(argv: readonly string[] = []): Promise<Command> {
  const program = new Command('vigil')
    .description('Vigil: a streaming video-LLM assistant that answers questions about anything it has seen')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  const named = COMMANDS.filter(([name]) => name === argv[2]);
  for (const [, load] of named.length > 0 ? named : COMMANDS) program.addCommand(await load());
  for (const command of program.commands) command.exitOverride();
  for (const command of program.commands.flatMap((c) => c.commands)) command.exitOverride();
  return program;
}

/** Runs the CLI and returns the exit code: 0 ok, 1 failure (or damage found), 2 bad input or usage. */
export async function main(argv: string[]): Promise<number> {
  try {
    await (await buildProgram(argv)).parseAsync(argv);
    return 0;
  } catch (error) {
    // Commander's own usage errors exit 2; a command's deliberate exit code (e.g. verify's 1) stands.
    if (error instanceof CommanderError) return error.code.startsWith('commander.') ? (error.exitCode === 0 ? 0 : 2) : error.exitCode;
    if (isVigilError(error)) {
      process.stderr.write(`vigil: ${error.message}\n`);
      return 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`vigil: unexpected error: ${message}\n`);
    if (process.env.VIGIL_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    else process.stderr.write('(set VIGIL_DEBUG=1 for the stack trace)\n');
    return 1;
  }
}
