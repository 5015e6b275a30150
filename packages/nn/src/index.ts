/** @sparsegrad/nn in Node: everything of portable.ts, plus checkpoint files (save, load). */
export * from './portable.ts';
export { save, load, writeFileAtomic } from './serialize/checkpoint.ts';
