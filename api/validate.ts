import type { z } from 'zod';
import { ApiError } from './errors.js';

/**
 * Parses request input with a zod schema; bad input is a 400 BAD_INPUT naming each field and what
 * is wrong with it (at most five, so a huge bad body gives a short answer).
 */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.slice(0, 5).map((issue) => {
    const at = issue.path.length > 0 ? issue.path.join('.') : where;
    return `${at}: ${issue.message}`;
  });
  throw new ApiError(400, 'BAD_INPUT', `invalid ${where}: ${problems.join('; ')}`);
}
