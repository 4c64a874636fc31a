import { Command, CommanderError } from 'commander';
import { chatCommand } from './cli/commands/chatCommand.js';
import { modelsCommand } from './cli/commands/modelsCommand.js';
import { isVigilError } from './errors.js';

export function buildProgram(): Command {
  const program = new Command('vigil')
    .description('Vigil: a streaming video-LLM assistant that answers questions about anything it has seen')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  program.addCommand(modelsCommand());
  program.addCommand(chatCommand());
  for (const command of program.commands) command.exitOverride();
  for (const command of program.commands.flatMap((c) => c.commands)) command.exitOverride();
  return program;
}

/** Runs the CLI and returns the exit code: 0 ok, 1 unexpected failure, 2 bad input or usage. */
export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
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
