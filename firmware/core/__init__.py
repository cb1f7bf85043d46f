"""The application core's parts (``charger.ChargerApp`` wires them): the
task table (``tasks``), the H-9 fail-safe CST (``failsafe``), the record /
event plumbing (``records``), the heap collection policy (``heap``) and the
console start (``console``).  Plain objects the app owns, not mixins."""
