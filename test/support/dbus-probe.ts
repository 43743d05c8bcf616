import { Message, sessionBus, type MessageBus } from 'dbus-next';

/**
 * A plain dbus-next connection that asks the bus daemon who owns a name and
 * who queues for it, so tests wait for the daemon's own state instead of
 * sleeping.
 *
 * @example
 * const probe = await BusProbe.connect(bus.address);
 * await waitFor(async () => (await probe.queue(name)).length === 2);
 */
export class BusProbe {
  private constructor(private readonly bus: MessageBus) {}

  static async connect(address: string): Promise<BusProbe> {
    const bus = sessionBus({ busAddress: address });
    await new Promise<void>((resolve, reject) => {
      bus.once('connect', resolve);
      bus.once('error', reject);
    });
    return new BusProbe(bus);
  }

  /** The owner of `name`, then everyone queued for it, in queue order; empty when nobody owns it. */
  async queue(name: string): Promise<string[]> {
    try {
      const reply = await this.bus.call(
        new Message({
          destination: 'org.freedesktop.DBus',
          path: '/org/freedesktop/DBus',
          interface: 'org.freedesktop.DBus',
          member: 'ListQueuedOwners',
          signature: 's',
          body: [name],
        }),
      );
      return (reply?.body[0] as string[] | undefined) ?? [];
    } catch (error) {
      if ((error as { type?: string }).type === 'org.freedesktop.DBus.Error.NameHasNoOwner') return [];
      throw error;
    }
  }

  close(): void {
    this.bus.disconnect();
  }
}
