"""The Functions app's side: what the triggers in function_app.py call.

`service` (ticket, sweep and reconcile handling over the stores, queues and engine), `http_api`
(the HTTP routes, independent of the Functions host), `context` (the one service per worker
process, built from the app settings) and `logs` (request and config ids on every record).
It may import every lower layer; it never imports `cli`.
"""
