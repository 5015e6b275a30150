import type { BlockLayout } from '../backend.ts';

/**
 * Device data a GPU backend derives from a block layout (copies of its index arrays, work tables),
 * each built on first use and freed when the layout is garbage collected. Layouts are immutable,
 * so the layout object itself is the key.
 */
export class LayoutDeviceCache<B> {
  private readonly entries = new WeakMap<BlockLayout, { values: Map<string, unknown>; owned: B[] }>();
  private readonly registry: FinalizationRegistry<B[]>;

  /** `free` returns a buffer to its backend (work queued before stays ordered before any reuse). */
  constructor(free: (buffer: B) => void) {
    this.registry = new FinalizationRegistry((owned) => owned.forEach(free));
  }

  /** The value stored under `key` for `layout`; `make` builds it once and names the buffers it owns. */
  get<T>(layout: BlockLayout, key: string, make: () => { value: T; buffers: B[] }): T {
    let entry = this.entries.get(layout);
    if (!entry) {
      entry = { values: new Map(), owned: [] };
      this.entries.set(layout, entry);
      this.registry.register(layout, entry.owned);
    }
    if (!entry.values.has(key)) {
      const made = make();
      entry.values.set(key, made.value);
      entry.owned.push(...made.buffers);
    }
    return entry.values.get(key) as T;
  }
}
