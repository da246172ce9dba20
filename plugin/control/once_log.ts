// Logs each distinct problem once (remembers the last 16), so a control service that keeps serving
// the same bad table, or stays unreachable, does not flood Envoy's log. `clear` after a success.
import { logWarn } from "../abi/log";

const REMEMBERED: i32 = 16;

export class OnceLog {
  private seen: string[] = [];
  private next: i32 = 0;

  warn(message: string): void {
    for (let i = 0; i < this.seen.length; i++) if (unchecked(this.seen[i]) == message) return;
    if (this.seen.length < REMEMBERED) this.seen.push(message);
    else {
      this.seen[this.next] = message;
      this.next = (this.next + 1) % REMEMBERED;
    }
    logWarn(message);
  }

  clear(): void {
    this.seen = [];
    this.next = 0;
  }
}
