from mercato.routing import router

api = router()
