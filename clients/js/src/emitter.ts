/** A minimal typed event emitter: `on` returns the function that removes
 *  the listener. A listener that throws does not stop the others: its
 *  error goes to `failed` (thrown again on its own by default). */
export class Emitter<E extends { [K in keyof E]: unknown }> {
  private _l: { [K in keyof E]?: Array<(ev: E[K]) => void> } = {};

  on<K extends keyof E>(event: K, fn: (ev: E[K]) => void): () => void {
    (this._l[event] ||= []).push(fn);
    return () => this.off(event, fn);
  }

  off<K extends keyof E>(event: K, fn: (ev: E[K]) => void): void {
    const a = this._l[event];
    if (a) this._l[event] = a.filter((f) => f !== fn);
  }

  protected emit<K extends keyof E>(event: K, ev: E[K]): void {
    for (const fn of this._l[event] || []) {
      try {
        fn(ev);
      } catch (e) {
        // An application bug must not break the connection's bookkeeping.
        this.failed(e, event);
      }
    }
  }

  protected has(event: keyof E): boolean {
    return !!this._l[event]?.length;
  }

  protected failed(e: unknown, _event?: keyof E): void {
    setTimeout(() => { throw e; });
  }
}
