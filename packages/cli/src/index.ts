/** @sparsegrad/cli: the `sparsegrad` command, usable programmatically through main(argv). */
export { main } from './main.ts';
