import { Command, CommanderError } from 'commander';
import { askCommand } from './cli/commands/askCommand.js';
import { chatCommand } from './cli/commands/chatCommand.js';
import { clusterCommand } from './cli/commands/clusterCommand.js';
import { demoCommand } from './cli/commands/demoCommand.js';
import { evalCommand } from './cli/commands/evalCommand.js';
import { modelsCommand } from './cli/commands/modelsCommand.js';
import { sourceCommand } from './cli/commands/sourceCommand.js';
import { clipCommand } from './cli/commands/clipCommand.js';
import { storeCommand } from './cli/commands/storeCommand.js';
import { serveCommand } from './cli/commands/serveCommand.js';
import { watchCommand } from './cli/commands/watchCommand.js';
import { isVigilError } from '../common/errors.js';

export function buildProgram(): Command {
  const program = new Command('vigil')
    .description('Vigil: a streaming video-LLM assistant that answers questions about anything it has seen')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  program.addCommand(demoCommand());
  program.addCommand(askCommand());
  program.addCommand(modelsCommand());
  program.addCommand(chatCommand());
  program.addCommand(sourceCommand());
  program.addCommand(clipCommand());
  program.addCommand(storeCommand());
  program.addCommand(serveCommand());
  program.addCommand(evalCommand());
  program.addCommand(watchCommand());
  program.addCommand(clusterCommand());
  for (const command of program.commands) command.exitOverride();
  for (const command of program.commands.flatMap((c) => c.commands)) command.exitOverride();
  return program;
}

/** Runs the CLI and returns the exit code: 0 ok, 1 failure (or damage found), 2 bad input or usage. */
export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
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
