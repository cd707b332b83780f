"""Programs that run beside the controller: the bundled demo service and the D-MA.

They talk to the controller only through its REST API and never import `controller/` or Ryu.
"""
