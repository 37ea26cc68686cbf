"""Chapter experiments: each chapter's runs, tables and budgets, one module per chapter.

A chapter module builds on the method packages (``course_lib.pruning``,
``course_lib.sparse``, ``course_lib.dpp``, ``course_lib.methods``) and on the
foundations; nothing below it imports it. Each module declares its own budget
per profile (``BUDGETS``, read with :func:`course_lib.profiles.by_profile`),
so that a chapter's settings live beside the experiment that uses them.

A notebook imports its chapter as ``chapter``::

    from course_lib.chapters import ch03_lottery_tickets as chapter
"""
