"""The persona studio: business staff see, adjust and act on personas (mounted on the service at ``/studio``).

Layer: above ``scoring`` (it reads the same stores as the report and the service), below ``serving``
(which mounts it). Pages: overview, person, segment rules, audiences, models. The numbers pages show are
computed at update time (:mod:`studio.aggregates`), never per request.
"""
