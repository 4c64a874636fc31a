import { VigilError } from '../../../common/errors.js';

const PLACEHOLDER = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * Replaces `${NAME}` with the environment variable NAME, so secrets (camera passwords, API tokens)
 * stay out of the config file and out of stored stream records. A missing variable is an error that
 * names it (never a silent empty password).
 */
export function expandEnv(text: string, env: NodeJS.ProcessEnv = process.env, where = 'config'): string {
  return text.replace(PLACEHOLDER, (_, name: string) => {
    const value = env[name];
    if (value === undefined) throw new VigilError('BAD_CONFIG', `${where} refers to the environment variable \${${name}}, which is not set`);
    return value;
  });
}

export function hasEnvPlaceholders(text: string): boolean {
  return new RegExp(PLACEHOLDER.source).test(text);
}
