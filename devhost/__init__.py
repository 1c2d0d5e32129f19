"""devhost: a local stand-in for `func start` (the Functions Core Tools cannot be installed here).

It runs the Functions app on this machine without the Functions host, for development, demos and
the smoke test, and is never deployed (.funcignore leaves it out of the package). Like the host it
reads the settings (local.settings.json's `Values` under the environment) and host.json, imports
function_app.py, indexes its FunctionApp (`get_functions()` and each function's binding metadata)
and drives every function through real `azure.functions` objects:

- Service Bus queue triggers receive with azure-servicebus (sessions included) and settle as the
  host does: complete on return, abandon on an exception (servicebus.py);
- timer triggers fire on their NCRONTAB schedule, and on demand through the host's admin call
  `POST /admin/functions/{name}` (timers.py, ncrontab.py);
- HTTP triggers are served on a local port with function keys (http.py).

`python -m devhost --help`; docs/devhost.md says what differs from the real host.
"""
