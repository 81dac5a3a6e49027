/**
 * The backends a server runs, by id, and which one serves each language by default.
 *
 * @module
 */
import type { Language } from "../contract/types.ts";
import { SandboxError } from "../errors.ts";
import type { LanguageRuntime } from "./interface.ts";

/** Backends by id (registered by the server at start-up from configuration). */
export class RuntimeRegistry {
  readonly #runtimes = new Map<string, LanguageRuntime>();
  readonly #defaults = new Map<Language, string>();

  /**
   * Adds a backend. The first backend registered for a language becomes its default unless
   * {@link setDefault} says otherwise.
   * @throws SandboxError `UNKNOWN_RUNTIME` when the id is taken.
   */
  register(runtime: LanguageRuntime): void {
    const id = runtime.info.id;
    if (this.#runtimes.has(id)) {
      throw new SandboxError("UNKNOWN_RUNTIME", `A backend with id '${id}' is already registered.`);
    }
    this.#runtimes.set(id, runtime);
    for (const language of runtime.info.languages) {
      if (!this.#defaults.has(language)) this.#defaults.set(language, id);
    }
  }

  /**
   * Makes `id` the default backend of `language`.
   * @throws SandboxError `UNKNOWN_RUNTIME` when no such backend runs the language.
   */
  setDefault(language: Language, id: string): void {
    this.resolve(language, id);
    this.#defaults.set(language, id);
  }

  /** The backend with this id. */
  get(id: string): LanguageRuntime | undefined {
    return this.#runtimes.get(id);
  }

  /** Every backend, in registration order. */
  list(): LanguageRuntime[] {
    return [...this.#runtimes.values()];
  }

  /** Id of the default backend of each language that has one. */
  defaults(): Partial<Record<Language, string>> {
    return Object.fromEntries(this.#defaults) as Partial<Record<Language, string>>;
  }

  /**
   * The backend for `language`: `id` when given, else the language's default.
   * @throws SandboxError `UNKNOWN_RUNTIME` (no such id, or it does not run the language),
   *   `UNSUPPORTED_LANGUAGE` (no backend runs the language).
   */
  resolve(language: Language, id?: string | null): LanguageRuntime {
    if (id !== undefined && id !== null) {
      const runtime = this.#runtimes.get(id);
      if (!runtime) {
        const known = [...this.#runtimes.keys()].join(", ") || "none";
        throw new SandboxError("UNKNOWN_RUNTIME", `No backend '${id}' (registered: ${known}).`);
      }
      if (!runtime.info.languages.includes(language)) {
        throw new SandboxError(
          "UNKNOWN_RUNTIME",
          `Backend '${id}' does not run ${language} (it runs ${runtime.info.languages.join(", ")}).`,
        );
      }
      return runtime;
    }
    const fallback = this.#defaults.get(language);
    const runtime = fallback === undefined ? undefined : this.#runtimes.get(fallback);
    if (!runtime) {
      throw new SandboxError("UNSUPPORTED_LANGUAGE", `No backend on this server runs ${language}.`);
    }
    return runtime;
  }

  /** Closes every backend. */
  async close(): Promise<void> {
    await Promise.allSettled(this.list().map((runtime) => runtime.close()));
  }
}
