// Entry point of the CPU backend's WebAssembly module.
export * from './gemm';
export * from './elementwise';

/** First byte the host may use: static data (constants, math tables) lives below it. */
export function heapBase(): usize {
  return __heap_base;
}
