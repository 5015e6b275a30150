/** Reading GPU buffers back to the host. */

/**
 * Maps a buffer for reading. Dawn's Node bindings hold no event-loop handle while a map is
 * pending: keep the loop alive (or Node would exit with the promise unsettled).
 */
export async function mapForReading(buffer: GPUBuffer): Promise<void> {
  const keepAlive = setInterval(() => {}, 1000);
  try {
    await buffer.mapAsync(GPUMapMode.READ);
  } finally {
    clearInterval(keepAlive);
  }
}
