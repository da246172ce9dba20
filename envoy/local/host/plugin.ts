/**
 * One plugin configuration as Envoy loads it (a wasm filter config: root_id, name, configuration), with
 * the key cpp-host gives it (PluginBase::key_: root_id ‖ configuration ‖ Envoy's listener key). A new
 * key runs the canary again and starts a new root context in every VM; the same key reuses the roots.
 */
export class PluginGeneration {
  /** Retired (its filter chains drained): its roots got on_done / on_delete. */
  retired = false;

  constructor(
    /** 1, 2, … in the order the host loaded them. */
    readonly id: number,
    readonly configuration: Uint8Array,
    readonly rootId: string,
    readonly pluginName: string,
  ) {}

  get key(): string {
    return `${this.rootId}\0${Buffer.from(this.configuration).toString("base64")}`;
  }
}
